"""Per-image random generators, so corrupted data never depends on batching, device or processes.

Image ``index`` of corruption ``name`` at ``severity`` under ``seed`` draws from
``Generator(PCG64(SeedSequence([seed, stable_id(name), severity, index])))``. The reference scripts
never seed (they use numpy's global state), so only the distributions, not the values, can match them.

Building that generator through numpy costs ~18 us, mostly ``SeedSequence`` hashing in Python; at
32 px that is as much as a whole corruption of the image. :func:`seed_words` computes the same
``SeedSequence(...).generate_state(4, uint64)`` words for a whole batch of indices at once (vectorised
uint32 arithmetic, NumPy's documented SeedSequence algorithm), and :class:`LazyGenerators` hands them
to ``PCG64`` directly (~2 us per image): the very same streams, checked against numpy once per process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np
from numpy.random.bit_generator import ISeedSequence

from smoothbench.corruptions.registry import CANONICAL_NAMES
from smoothbench.errors import UserError

# numpy.random.SeedSequence constants (pool of 4 uint32 words, hashmix / mix multipliers).
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R = 0xCA01F9DD, 0x4973F715
_MASK32 = 0xFFFFFFFF


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


def _uint32_words(value: int) -> list[int]:
    """A non-negative int as SeedSequence reads it: little-endian 32-bit words (0 is one word)."""
    words = [value & _MASK32]
    value >>= 32
    while value:
        words.append(value & _MASK32)
        value >>= 32
    return words


def seed_words(seed: int, corruption: str, severity: int, indices: np.ndarray) -> np.ndarray:
    """``SeedSequence([seed, stable_id(corruption), severity, i]).generate_state(4, uint64)`` for every
    ``i`` in ``indices`` (each < 2**32), as uint64 ``[N, 4]``.

    SeedSequence: the entropy words ``e`` (each int as little-endian uint32 words) fill a pool of 4 by
    ``hashmix`` (``v ^= A; A *= MULT_A; v *= A; v ^= v >> 16`` with a running constant ``A``), each pool
    word is mixed into every other (``mix(x, y) = (L x - R y) ^ >> 16``), extra words are mixed into all;
    the state is 8 hashed pool words (running constant ``B``), paired little-endian into 4 uint64.
    Every step is elementwise, so all indices go through at once.
    """
    idx = np.asarray(indices, dtype=np.uint64)
    if idx.size and int(idx.max()) > _MASK32:
        raise ValueError("seed_words handles image indices below 2**32")
    n = idx.size
    fixed = _uint32_words(seed) + [stable_id(corruption), severity]
    entropy = [np.full(n, w, dtype=np.uint32) for w in fixed] + [idx.astype(np.uint32)]
    hash_a = _INIT_A

    def hashmix(value: np.ndarray) -> np.ndarray:
        nonlocal hash_a
        value = value ^ np.uint32(hash_a)
        hash_a = (hash_a * _MULT_A) & _MASK32
        value = value * np.uint32(hash_a)
        return value ^ (value >> np.uint32(16))

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r = np.uint32(_MIX_MULT_L) * x - np.uint32(_MIX_MULT_R) * y
        return r ^ (r >> np.uint32(16))

    pool = [hashmix(entropy[i]) for i in range(4)]
    for src in range(4):
        for dst in range(4):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    for extra in entropy[4:]:
        for dst in range(4):
            pool[dst] = mix(pool[dst], hashmix(extra))
    hash_b, state = _INIT_B, []
    for i in range(8):
        value = pool[i % 4] ^ np.uint32(hash_b)
        hash_b = (hash_b * _MULT_B) & _MASK32
        value = value * np.uint32(hash_b)
        state.append((value ^ (value >> np.uint32(16))).astype(np.uint64))
    return np.stack([state[2 * k] | (state[2 * k + 1] << np.uint64(32)) for k in range(4)], axis=1)


class _StateWords:
    """A seed sequence that hands PCG64 precomputed ``generate_state(4, uint64)`` words."""

    __slots__ = ("words",)

    def __init__(self, words: np.ndarray):
        self.words = words

    def generate_state(self, n_words: int, dtype=np.uint32) -> np.ndarray:
        return self.words


ISeedSequence.register(_StateWords)


@lru_cache(maxsize=1)
def _seed_words_match_numpy() -> bool:
    """Whether :func:`seed_words` reproduces this numpy's SeedSequence (else the slow path is used)."""
    keys = [(0, "gaussian_noise", 1, 0), (2**40 + 5, "spatter", 5, 123456), (7, "fog", 3, 2**32 - 1)]
    return all(
        np.array_equal(seed_words(s, c, v, np.array([i]))[0],
                       np.random.SeedSequence([s, stable_id(c), v, i]).generate_state(4, np.uint64))
        for s, c, v, i in keys
    )


class LazyGenerators(Sequence):
    """The same generators as :func:`image_generators`, each built on first use (a list to its users).

    The seed words of the whole run are computed together on the first use (see :func:`seed_words`;
    ~0.1 ms however many images, so a run split into chunks shares them through :meth:`chunk`);
    corruptions without random draws never pay anything.
    """

    def __init__(self, seed: int, corruption: str, severity: int, start_index: int, n: int):
        stable_id(corruption)
        if seed < 0 or start_index < 0:
            raise UserError(f"seed ({seed}) and start_index ({start_index}) must be >= 0")
        self._key = (seed, corruption, severity, start_index)
        self._run: dict = {"n": n, "words": None}  # shared with the chunks of this run
        self._offset = 0
        self._cache: list[np.random.Generator | None] = [None] * n

    def chunk(self, lo: int, hi: int) -> LazyGenerators:
        """The generators of images ``lo .. hi-1`` of this run (indices relative to its start)."""
        part = object.__new__(LazyGenerators)
        part._key, part._run, part._offset = self._key, self._run, self._offset + lo
        part._cache = [None] * (hi - lo)
        return part

    def __len__(self) -> int:
        return len(self._cache)

    def _build(self, i: int) -> np.random.Generator:
        seed, name, severity, start = self._key
        run = self._run
        if start + run["n"] > _MASK32 + 1 or not _seed_words_match_numpy():
            return image_generator(seed, name, severity, start + self._offset + i)
        if run["words"] is None:
            run["words"] = seed_words(seed, name, severity, np.arange(start, start + run["n"], dtype=np.uint64))
        return np.random.Generator(np.random.PCG64(_StateWords(run["words"][self._offset + i])))

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        rng = self._cache[i]
        if rng is None:
            rng = self._cache[i] = self._build(i)
        return rng

    def __iter__(self) -> Iterator[np.random.Generator]:
        for i in range(len(self)):
            yield self[i]
