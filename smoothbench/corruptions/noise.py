"""Noise corruptions: gaussian, shot, impulse (common) and speckle (extra).

Each image draws from its own generator (``ctx.rngs[i]``), exactly the arrays the reference draws
from numpy's global state (same shapes, same order), so values differ from the reference but the
distribution is the same; shot noise draws one uniform per value and turns it into the Poisson count
by exact inversion (:func:`poisson_inverse`), vectorised where numpy samples value by value. The registered
functions get the uint8 images; the ``*_apply`` functions take them or ``x = image / 255`` (float32,
see :func:`~smoothbench.corruptions.kernels.unit_float64`). Outputs are on the 0..255 scale, clipped
like the reference (``clip(., 0, 1) * 255``), computed in float64 as the reference does.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from scipy import special

from smoothbench.corruptions.kernels import unit_float64
from smoothbench.corruptions.registry import CorruptionContext, register_corruption


def _normals(like: torch.Tensor, ctx: CorruptionContext) -> torch.Tensor:
    """One standard normal per value, image ``i`` from ``ctx.rngs[i]`` (float64, on ``like``'s device)."""
    z = np.empty(tuple(like.shape), dtype=np.float64)
    for i, rng in enumerate(ctx.rngs):
        rng.standard_normal(out=z[i])
    return torch.from_numpy(z).to(like.device)


def gaussian_noise_apply(x: torch.Tensor, c: float, z: torch.Tensor) -> torch.Tensor:
    """``clip(x + c z, 0, 1) * 255`` for standard normal ``z`` (the reference's ``normal(scale=c)``)."""
    return torch.mul(z, c).add_(unit_float64(x)).clamp_(0, 1).mul_(255)


@register_corruption("gaussian_noise", group="noise", common=True)
def gaussian_noise(images: torch.Tensor, c: float, ctx: CorruptionContext) -> torch.Tensor:
    """Additive Gaussian noise of standard deviation ``c`` per value."""
    return gaussian_noise_apply(images, c, _normals(images, ctx))


def shot_noise_apply(c: float, counts: torch.Tensor) -> torch.Tensor:
    """``clip(counts / c, 0, 1) * 255`` for ``counts ~ Poisson(x c)``."""
    return (counts / c).clamp_(0, 1) * 255


#: Buckets per level of the Poisson guide table (Chen & Asau's indexed search).
_GUIDE = 1024


@lru_cache(maxsize=32)
def _poisson_tables(c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inversion tables of ``Poisson(lam_v)``, ``lam_v = (v / 255) c`` for the 256 pixel levels ``v``.

    Per level, the CDF ``F_v(k)`` (``scipy.special.pdtr``, float64) for ``k`` in ``lam ± (10 sqrt(lam)
    + 10)`` (the mass outside, < 1e-19, goes to the ends: the last entry is 2), all levels concatenated;
    ``guide[v, b]``: the position of the first ``k`` with ``F_v(k) > b / 1024``. Returns
    ``(cdf, guide.ravel(), base, last)``: ``count = position - base[v]``, ``last[v]`` the final position.
    """
    lam = np.arange(256) / 255.0 * c
    reach = 10 * np.sqrt(lam) + 10
    lo = np.maximum(0, np.floor(lam - reach)).astype(np.int64)
    width = np.ceil(lam + reach).astype(np.int64) - lo + 1
    start = np.concatenate([[0], np.cumsum(width)[:-1]])
    cdf = np.empty(int(width.sum()))
    guide = np.empty((256, _GUIDE), dtype=np.intp)
    marks = np.arange(_GUIDE) / _GUIDE
    for v in range(256):
        row = special.pdtr(np.arange(lo[v], lo[v] + width[v]), lam[v])
        row[-1] = 2.0
        cdf[start[v] : start[v] + width[v]] = row
        guide[v] = start[v] + np.searchsorted(row, marks, side="right")
    return cdf, guide.reshape(-1), start - lo, start + width - 1


def poisson_inverse(levels: np.ndarray, c: float, u: np.ndarray) -> np.ndarray:
    """``Poisson((levels / 255) c)`` counts by inversion of uniforms ``u`` in [0, 1): the smallest ``k``
    with ``F(k) > u``, so ``P(k) = F(k) - F(k-1)`` exactly (up to float64 CDF rounding).

    Indexed search (:func:`_poisson_tables`): start at the guide entry of ``u``'s bucket, step up at
    most twice (enough for all but ~1% of values), then binary-search the rest. Vectorised, one uniform per
    value, where numpy's Poisson samplers (PTRS / multiplication) run value by value
    (``benchmarks/corrupt_throughput.py`` times it).
    """
    cdf, guide, base, last = _poisson_tables(float(c))
    v = levels.reshape(-1).astype(np.intp)
    uf = u.reshape(-1)
    pos = guide[(v * _GUIDE) + (uf * _GUIDE).astype(np.intp)]
    for _ in range(2):
        pos += cdf[pos] <= uf
    rest = np.flatnonzero(cdf[pos] <= uf)
    lo, hi, ur = pos[rest] + 1, last[v[rest]], uf[rest]  # answer in [lo, hi]: F(hi) > u
    while rest.size and np.any(lo < hi):
        mid = (lo + hi) >> 1
        right = cdf[mid] <= ur
        lo = np.where(right, mid + 1, lo)
        hi = np.where(right, hi, mid)
    pos[rest] = lo
    return (pos - base[v]).reshape(levels.shape)


@register_corruption("shot_noise", group="noise", common=True)
def shot_noise(images: torch.Tensor, c: float, ctx: CorruptionContext) -> torch.Tensor:
    """Poisson (shot) noise: ``clip(Poisson(x c) / c, 0, 1) * 255``; one uniform per value from the
    image's generator, turned into a count by :func:`poisson_inverse`."""
    levels = images.cpu().numpy()
    u = np.empty(levels.shape, dtype=np.float64)
    for i, rng in enumerate(ctx.rngs):
        rng.random(out=u[i])
    counts = poisson_inverse(levels, c, u)
    return shot_noise_apply(c, torch.from_numpy(counts).to(images.device, torch.float64))


def impulse_noise_apply(x: torch.Tensor, amount: float, u_flip: torch.Tensor, u_salt: torch.Tensor) -> torch.Tensor:
    """skimage ``random_noise(mode='s&p', amount)``: a value flips where ``u_flip <= amount``, to 1
    (salt) where ``u_salt <= 0.5`` else to 0 (pepper); then ``clip * 255``.
    """
    salt = (u_salt <= 0.5).to(torch.float64)
    return torch.where(u_flip <= amount, salt, unit_float64(x)).clamp_(0, 1).mul_(255)


@register_corruption("impulse_noise", group="noise", common=True)
def impulse_noise(images: torch.Tensor, c: float, ctx: CorruptionContext) -> torch.Tensor:
    """Salt-and-pepper noise on a fraction ``c`` of the values (half salt, half pepper)."""
    u = np.empty((images.shape[0], 2, *images.shape[1:]), dtype=np.float64)
    for i, rng in enumerate(ctx.rngs):
        rng.random(out=u[i])  # the flip array, then the salt array: the reference's two draws
    u_t = torch.from_numpy(u).to(images.device)
    return impulse_noise_apply(images, c, u_t[:, 0], u_t[:, 1])


def speckle_noise_apply(x: torch.Tensor, c: float, z: torch.Tensor) -> torch.Tensor:
    """``clip(x + x c z, 0, 1) * 255`` for standard normal ``z``."""
    x = unit_float64(x)
    return torch.mul(z, c).mul_(x).add_(x).clamp_(0, 1).mul_(255)


@register_corruption("speckle_noise", group="noise", common=False)
def speckle_noise(images: torch.Tensor, c: float, ctx: CorruptionContext) -> torch.Tensor:
    """Multiplicative Gaussian noise: each value is scaled by ``1 + N(0, c^2)``."""
    return speckle_noise_apply(images, c, _normals(images, ctx))
