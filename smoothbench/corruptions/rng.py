"""Per-image random generators, so corrupted data never depends on batching, device or processes.

Image ``index`` of corruption ``name`` at ``severity`` under ``seed`` draws from
``Generator(PCG64(SeedSequence([seed, stable_id(name), severity, index])))``. The reference scripts
never seed (they use numpy's global state), so only the distributions, not the values, can match them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from smoothbench.corruptions.registry import CANONICAL_NAMES
from smoothbench.errors import UserError


def stable_id(corruption: str) -> int:
    """Fixed integer of a corruption: its position in the canonical 19-list (0..18)."""
    try:
        return CANONICAL_NAMES.index(corruption)
    except ValueError:
        raise UserError(f"unknown corruption {corruption!r}: choose one of {', '.join(CANONICAL_NAMES)}") from None


def image_generator(seed: int, corruption: str, severity: int, index: int) -> np.random.Generator:
    """The generator of image ``index``."""
    if seed < 0 or index < 0:
        raise UserError(f"seed ({seed}) and image index ({index}) must be >= 0")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stable_id(corruption), severity, index])))


def image_generators(seed: int, corruption: str, severity: int, start_index: int, n: int) -> list[np.random.Generator]:
    """One generator per image ``start_index .. start_index + n - 1``."""
    return [image_generator(seed, corruption, severity, start_index + i) for i in range(n)]


class LazyGenerators(Sequence):
    """The same generators as :func:`image_generators`, each built on first use (a list to its users).

    Building one costs ~10-30 us; corruptions without random draws never pay it.
    """

    def __init__(self, seed: int, corruption: str, severity: int, start_index: int, n: int):
        stable_id(corruption)
        if seed < 0 or start_index < 0:
            raise UserError(f"seed ({seed}) and start_index ({start_index}) must be >= 0")
        self._key = (seed, corruption, severity, start_index)
        self._cache: list[np.random.Generator | None] = [None] * n

    def __len__(self) -> int:
        return len(self._cache)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        if self._cache[i] is None:
            seed, name, severity, start = self._key
            self._cache[i] = image_generator(seed, name, severity, start + i)
        return self._cache[i]
