"""Registry of corruption functions and the context they run in.

The canonical list (:data:`smoothbench.schema.CORRUPTIONS`) is the order of the reference creation scripts
(hendrycks/robustness, ``make_cifar_c.py`` / ``make_imagenet_c.py``): the 15 common corruptions, then the 4
extras. Each corruption module registers its functions with :func:`register_corruption`; the registry
checks the declared group/common flag against that list so the two can never drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import torch

from smoothbench.errors import UserError
from smoothbench.schema import COMMON_CORRUPTIONS, CORRUPTION_GROUPS, CORRUPTIONS, EXTRA_CORRUPTIONS

#: Canonical names in the reference order (their home is :data:`smoothbench.schema.CORRUPTIONS`).
CANONICAL_NAMES: tuple[str, ...] = tuple(c.name for c in CORRUPTIONS)
_CANONICAL_INFO = {c.name: (c.group, c.common) for c in CORRUPTIONS}


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
    if group not in CORRUPTION_GROUPS or _CANONICAL_INFO[name] != (group, common):
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
        return list(COMMON_CORRUPTIONS)
    if subset == "extra":
        return list(EXTRA_CORRUPTIONS)
    if subset in CORRUPTION_GROUPS:
        return [c.name for c in CORRUPTIONS if c.group == subset]
    raise UserError(f"unknown corruption subset {subset!r}: use common, extra, all, {', '.join(CORRUPTION_GROUPS)}")
