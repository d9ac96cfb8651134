"""Registry of corruption functions and the context they run in.

The canonical list below is the order of the reference creation scripts (hendrycks/robustness,
``make_cifar_c.py`` / ``make_imagenet_c.py``): the 15 common corruptions, then the 4 extras. Each
corruption module registers its functions with :func:`register_corruption`; the registry checks the
declared group/common flag against this list so the two can never drift apart.

Groups follow Hendrycks & Dietterich (2019) and imagecorruptions: brightness is a *weather*
corruption there, so ``names("weather")`` is snow, frost, fog, brightness, spatter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import torch

from smoothbench.errors import UserError

GROUPS = ("noise", "blur", "weather", "digital")

#: (name, group, common) in the reference scripts' dict order.
CANONICAL: tuple[tuple[str, str, bool], ...] = (
    ("gaussian_noise", "noise", True),
    ("shot_noise", "noise", True),
    ("impulse_noise", "noise", True),
    ("defocus_blur", "blur", True),
    ("glass_blur", "blur", True),
    ("motion_blur", "blur", True),
    ("zoom_blur", "blur", True),
    ("snow", "weather", True),
    ("frost", "weather", True),
    ("fog", "weather", True),
    ("brightness", "weather", True),
    ("contrast", "digital", True),
    ("elastic_transform", "digital", True),
    ("pixelate", "digital", True),
    ("jpeg_compression", "digital", True),
    ("speckle_noise", "noise", False),
    ("gaussian_blur", "blur", False),
    ("spatter", "weather", False),
    ("saturate", "digital", False),
)
CANONICAL_NAMES: tuple[str, ...] = tuple(name for name, _, _ in CANONICAL)
_CANONICAL_INFO = {name: (group, common) for name, group, common in CANONICAL}


@dataclass
class CorruptionContext:
    """What a corruption function may use besides the images and its parameters.

    ``rngs`` holds one generator per image of the batch (see :mod:`smoothbench.corruptions.rng`; a
    list, or from ``corrupt`` a list-like sequence that builds each generator on first use); a
    function draws image ``i``'s randomness from ``rngs[i]`` only, so results do not depend on
    batching. ``table`` is ``"cifar"`` or ``"imagenet"``. ``run`` is shared by all the batches of one
    ``corrupt`` call: a place for what a function loads once per call (e.g. the frost textures).
    """

    rngs: Sequence[np.random.Generator]
    table: Literal["cifar", "imagenet"]
    severity: int
    device: torch.device
    frost_dir: str | None = None
    run: dict = field(default_factory=dict)


#: fn(images uint8 [N,H,W,3] on ctx.device, params, ctx) -> float [N,H,W,3] on the 0..255 scale (the
#: engine truncates it to uint8). Each function converts the pixels to the precision the reference uses.
CorruptionFn = Callable[[torch.Tensor, object, CorruptionContext], torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    """A registered corruption: its canonical name, group, common flag and function."""

    name: str
    group: str
    common: bool
    fn: CorruptionFn


_REGISTRY: dict[str, Corruption] = {}


def register_corruption(name: str, *, group: str, common: bool) -> Callable[[CorruptionFn], CorruptionFn]:
    """Decorator registering ``fn`` as corruption ``name`` (must match the canonical list)."""
    if name not in _CANONICAL_INFO:
        raise ValueError(f"{name!r} is not one of the 19 canonical corruptions")
    if group not in GROUPS or _CANONICAL_INFO[name] != (group, common):
        raise ValueError(f"{name!r} is declared as {(group, common)}, canonical is {_CANONICAL_INFO[name]}")

    def decorate(fn: CorruptionFn) -> CorruptionFn:
        _REGISTRY[name] = Corruption(name, group, common, fn)
        return fn

    return decorate


def get_corruption(name: str) -> Corruption:
    """The registered corruption ``name``; UserError if unknown or not available."""
    if name not in _CANONICAL_INFO:
        raise UserError(f"unknown corruption {name!r}: choose one of {', '.join(CANONICAL_NAMES)}")
    if name not in _REGISTRY:
        raise UserError(f"corruption {name!r} is not available in this installation (its module is missing)")
    return _REGISTRY[name]


def canonical_names(subset: str = "common") -> list[str]:
    """Canonical names in reference order for ``subset``: common, extra, all or a group name."""
    if subset == "all":
        return list(CANONICAL_NAMES)
    if subset == "common":
        return [n for n, _, c in CANONICAL if c]
    if subset == "extra":
        return [n for n, _, c in CANONICAL if not c]
    if subset in GROUPS:
        return [n for n, g, _ in CANONICAL if g == subset]
    raise UserError(f"unknown corruption subset {subset!r}: use common, extra, all, {', '.join(GROUPS)}")
