"""ModelSpec: everything needed to rebuild a model, stored in every model file and run folder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

METHODS = ("dnn", "mcdo")
SMOOTHINGS = ("none", "tanh-blur", "blur", "relu6-blur")
BLURS = ("box2-pad1", "box2-same", "binomial3")
STEMS = ("cifar", "imagenet")


@dataclass(frozen=True)
class ModelSpec:
    """A model configuration.

    ``width=None`` means the family's standard base width (64 for ResNets); a smaller width gives the narrow
    models of the demo and the tests. ``dropout_rate=None`` means the family default (0.3; AlexNet 0.1) for ``mcdo`` and 0 for ``dnn``.
    ``mean``/``std`` are the input normalisation the model was trained with (the data pipeline applies
    it; the module itself takes normalised tensors, as the paper's models do).
    """

    arch: str
    method: str = "dnn"
    smoothing: str = "none"
    blur: str = "box2-pad1"
    tau: float = 10.0
    dropout_rate: float | None = None
    num_classes: int = 10
    stem: str = "cifar"
    width: int | None = None
    dataset: str | None = None
    image_size: int = 32
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("mean", "std"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model spec fields: {', '.join(unknown)}")
        data = dict(data)
        for key in ("mean", "std"):
            if data.get(key) is not None:
                data[key] = tuple(float(v) for v in data[key])
        return cls(**data)

    def with_(self, **changes: Any) -> "ModelSpec":
        return replace(self, **changes)

    @property
    def name(self) -> str:
        """A readable name such as ``resnet18-mcdo-tanh-blur``."""
        parts = [self.arch, self.method]
        if self.smoothing != "none":
            parts.append(self.smoothing)
        return "-".join(parts)
