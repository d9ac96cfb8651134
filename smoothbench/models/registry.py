"""A timm-style model registry: ``@register_model`` on builders, ``create_model`` to build.

A builder takes a fully resolved :class:`ModelSpec` (``dropout_rate`` already a number) and returns a
:class:`~smoothbench.models.base.Classifier`. ``create_model`` validates the spec, resolves defaults,
numbers the MC-dropout layers (their ids seed the per-layer masks) and attaches the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from smoothbench.errors import UserError, param
from smoothbench.models.spec import BLURS, HEADS, METHODS, SMOOTHINGS, STEMS, ModelSpec

Builder = Callable[[ModelSpec], "object"]


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture."""

    name: str
    builder: Builder
    family: str
    default_dropout: float
    smoothing_layers: int
    stems: tuple[str, ...] = STEMS
    head: str = "gap"


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    family: str,
    smoothing_layers: int,
    default_dropout: float = 0.3,
    stems: tuple[str, ...] = STEMS,
    head: str = "gap",
) -> Callable[[Builder], Builder]:
    """Register ``builder`` under ``name`` (e.g. ``resnet18``); ``head`` is the family's own classifier head."""

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, family, default_dropout, smoothing_layers, stems, head)
        return builder

    return decorate


def _ensure_loaded() -> None:
    # Importing the families runs their @register_model decorators.
    import smoothbench.models.families  # noqa: F401


def list_models(family: str | None = None) -> list[str]:
    """Registered architecture names, sorted, optionally of one family."""
    _ensure_loaded()
    return sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)


def get_entry(arch: str) -> ModelEntry:
    _ensure_loaded()
    if arch not in _REGISTRY:
        raise UserError(f"unknown architecture {arch!r}; `smoothbench models` lists the {len(_REGISTRY)} known ones")
    return _REGISTRY[arch]


def resolve_spec(spec: ModelSpec) -> ModelSpec:
    """Validate a spec and fill in the family's default dropout rate; a ``head`` equal to the family's own
    becomes ``None`` (one spelling per model)."""
    entry = get_entry(spec.arch)
    for value, allowed, what in (
        (spec.method, METHODS, "method"),
        (spec.smoothing, SMOOTHINGS, "smoothing"),
        (spec.blur, BLURS, "blur"),
        (spec.stem, entry.stems, "stem"),
    ):
        if value not in allowed:
            raise UserError(f"unknown {param(what)} {value!r} for {spec.arch}; choose one of {', '.join(allowed)}")
    if spec.head not in (None, *HEADS):
        raise UserError(f"unknown {param('head')} {spec.head!r} for {spec.arch}; choose one of {', '.join(HEADS)}")
    if spec.num_classes < 2:
        raise UserError(f"{param('num_classes')} must be at least 2, got {spec.num_classes}")
    if spec.tau <= 0:
        raise UserError(f"{param('tau')} must be positive, got {spec.tau}")
    rate = spec.dropout_rate
    if rate is None:
        rate = entry.default_dropout if spec.method == "mcdo" else 0.0
    if not 0.0 <= rate < 1.0:
        raise UserError(f"{param('dropout_rate')} must be in [0, 1), got {rate}")
    if spec.method == "dnn" and rate != 0.0:
        raise UserError(f"a dnn model has no MC dropout; use {param('method')} mcdo to set a {param('dropout_rate')}")
    return spec.with_(dropout_rate=float(rate), head=None if spec.head == entry.head else spec.head)


def create_model(arch: str | ModelSpec, **kwargs) -> "object":
    """Build a model: ``create_model("resnet18", method="mcdo", smoothing="tanh-blur", num_classes=100)``.

    Accepts either an architecture name plus :class:`ModelSpec` fields, or a ``ModelSpec``; a spec with a
    ``source`` (a torchvision, timm or user model) is rebuilt by :func:`smoothbench.models.foreign.build`.
    The returned module is in train mode with MC dropout off; ``model.spec`` holds the resolved spec.
    """
    from smoothbench.models.layers import MCDropout

    spec = arch if isinstance(arch, ModelSpec) else ModelSpec(arch=arch, **kwargs)
    if spec.source is not None:  # a model from elsewhere: its recorded source rebuilds it
        from smoothbench.models.foreign import build

        if spec.head is not None:
            raise UserError(f"{param('head')} is for smoothbench's architectures; a model from elsewhere keeps its own")

        return build(spec)
    spec = resolve_spec(spec)
    model = get_entry(spec.arch).builder(spec)
    for layer_id, module in enumerate(m for m in model.modules() if isinstance(m, MCDropout)):
        module.layer_id = layer_id
    model.spec = spec
    return model
