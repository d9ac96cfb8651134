"""ModelSpec: everything needed to rebuild a model, stored in every model file and run folder.

A smoothbench architecture is rebuilt from the registry (``arch``); a model from elsewhere (torchvision,
timm, a builder of the user's) carries a :class:`ModelSource` that says where it came from and what was done
to it (MC dropout, spatial smoothing, a CIFAR stem, a class subset), so ``smoothbench.load(run)`` rebuilds it
exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

METHODS = ("dnn", "mcdo")
SMOOTHINGS = ("none", "tanh-blur", "blur", "relu6-blur")
BLURS = ("box2-pad1", "box2-same", "binomial3")
STEMS = ("cifar", "imagenet")
#: Where a model comes from: smoothbench's registry, torchvision, timm, or a builder function of the user's.
SOURCE_KINDS = ("torchvision", "timm", "python")
#: Where ``--mc-dropout RATE`` inserts dropout into a model that has none.
MC_DROPOUT_PLACES = ("head", "blocks", "all")
#: Classifier heads of smoothbench's architectures (the paper's ``GAPBlock`` / ``MLPBlock`` ablation).
HEADS = ("gap", "mlp")


@dataclass(frozen=True)
class ModelSource:
    """A model that is not one of smoothbench's architectures, and what was done to it.

    ``kind``/``name``: ``torchvision``/``resnet18``, ``timm``/``resnet18``, ``python``/``file.py:builder`` or
    ``python``/``package.module:builder``. ``kwargs``: keyword arguments of the builder (``(key, value)``
    pairs). ``mc_dropout``: ``None`` (as built), ``"auto"`` (its dropout modules become MC dropout) or a
    rate inserted at ``mc_dropout_where``. ``smoothing`` / ``blur`` / ``tau`` / ``placement``: spatial
    smoothing inserted by :func:`smoothbench.models.surgery.smooth` (``placement`` ``("auto",)`` or module
    names). ``cifar_stem``: the ImageNet stem replaced by a 3x3/1 convolution without max-pool.
    ``class_indices``: the output classes kept (a subset of a larger label space), in order.
    """

    kind: str
    name: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    mc_dropout: str | None = None
    mc_dropout_where: str = "head"
    smoothing: str = "none"
    blur: str = "box2-pad1"
    tau: float = 10.0
    placement: tuple[str, ...] = ("auto",)
    cifar_stem: bool = False
    class_indices: tuple[int, ...] | None = None

    @property
    def ref(self) -> str:
        """The model argument that names it, e.g. ``torchvision:resnet18``."""
        return f"{'py' if self.kind == 'python' else self.kind}:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kwargs"] = [list(pair) for pair in self.kwargs]
        data["placement"] = list(self.placement)
        data["class_indices"] = None if self.class_indices is None else list(self.class_indices)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSource":
        data = dict(data)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown model source fields: {', '.join(unknown)}")
        data["kwargs"] = tuple((str(k), v) for k, v in data.get("kwargs", ()))
        data["placement"] = tuple(data.get("placement", ("auto",)))
        if data.get("class_indices") is not None:
            data["class_indices"] = tuple(int(i) for i in data["class_indices"])
        return cls(**data)


@dataclass(frozen=True)
class ModelSpec:
    """A model configuration.

    ``width=None`` means the family's standard base width (64 for ResNets); a smaller width gives the narrow
    models of the demo and the tests. ``dropout_rate=None`` means the family default (0.3; AlexNet 0.1) for ``mcdo`` and 0 for ``dnn``.
    ``mean``/``std`` are the input normalisation the model was trained with, ``image_size`` its input crop,
    ``resize`` the evaluation resize of the shorter side before the crop (``None``: none; for smoothbench's
    own ImageNet models the dataset's 256) and ``interpolation`` its filter: the model's input recipe
    (:attr:`preprocess`; the data pipeline applies it, the module takes normalised tensors, as the paper's
    models do). ``source`` is set for models from elsewhere (:class:`ModelSource`); ``arch`` is then
    ``source.ref``. ``head`` (``gap`` or ``mlp``, see :func:`smoothbench.models.base.classifier_head`) swaps
    the classifier head of smoothbench's architectures; ``None`` means the family's own (GAP for the ResNets,
    MLP for VGG and AlexNet), and model files written before the field existed load as ``None``.
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
    resize: int | None = None
    interpolation: str = "bilinear"
    source: ModelSource | None = None
    head: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("mean", "std"):
            if data[key] is not None:
                data[key] = list(data[key])
        data["source"] = None if self.source is None else self.source.to_dict()
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
        if data.get("source") is not None:
            data["source"] = ModelSource.from_dict(data["source"])
        return cls(**data)

    def with_(self, **changes: Any) -> "ModelSpec":
        return replace(self, **changes)

    @property
    def name(self) -> str:
        """A readable name such as ``resnet18-mcdo-tanh-blur`` (``resnet18-dnn-mlp-head`` with another head)."""
        parts = [self.arch, self.method]
        if self.smoothing != "none":
            parts.append(self.smoothing)
        if self.head is not None:
            parts.append(f"{self.head}-head")
        return "-".join(parts)

    @property
    def preprocess(self):
        """The model's input recipe (:class:`smoothbench.data.preprocess.Preprocess`); ``None`` when the spec
        records no normalisation (then the dataset's own recipe applies)."""
        from smoothbench.data.preprocess import DATASET_RESIZE, Preprocess

        if self.mean is None or self.std is None:
            return None
        resize = self.resize
        if resize is None and self.source is None:  # smoothbench's own models: the dataset's evaluation resize
            resize = DATASET_RESIZE.get(self.dataset or "")
        return Preprocess(tuple(self.mean), tuple(self.std), resize=resize, crop=self.image_size,
                          interpolation=self.interpolation)
