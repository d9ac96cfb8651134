"""Blur corruptions: defocus, glass, motion, zoom (common) and gaussian (extra).

The registered functions get the uint8 images ``[N,H,W,3]``; the ``*_apply`` functions take them or
``x = image / 255`` (float32). Outputs are on the 0..255 scale, clipped like the reference, in the
reference's precision (float64, but float32 for motion and zoom blur).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from smoothbench.corruptions.kernels import (
    disk_kernel,
    filter2d,
    gaussian_filter,
    imagemagick_to_8bit,
    motion_blur as im_motion_blur,
    unit_float64,
    zoom_sum,
)
from smoothbench.corruptions.registry import CorruptionContext, register_corruption


@register_corruption("defocus_blur", group="blur", common=True)
def defocus_blur(images: torch.Tensor, c: tuple, ctx: CorruptionContext) -> torch.Tensor:
    """Correlation with the anti-aliased disk ``disk_kernel(radius, alias_blur)`` (reflect-101 border,
    as OpenCV ``filter2D``), then ``clip * 255``. Kernel sum > 1 for ImageNet severities 4, 5 (quirk kept).
    """
    return filter2d(unit_float64(images), disk_kernel(float(c[0]), float(c[1])), "mirror").clamp_(0, 1).mul_(255)


@lru_cache(maxsize=16)
def _glass_visits(size: int, delta: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the pixels one glass-blur pass visits, in visiting order, and every pixel's
    visiting rank (never-visited pixels rank last)."""
    hs = np.arange(size - delta, delta, -1)
    pos = (hs[:, None] * size + hs[None, :]).reshape(-1)
    rank = np.full(size * size, np.iinfo(np.int64).max)
    rank[pos] = np.arange(pos.size)
    return pos, rank


def glass_sources(shifts: np.ndarray, size: int, delta: int) -> np.ndarray:
    """Source pixel of every pixel after one pass of the reference's glass-blur "swap" loop.

    The loop visits ``h = size-delta .. delta+1`` and ``w = size-delta .. delta+1`` (both descending)
    and, because the swap acts on numpy views, only copies ``x[h, w] = x[h+dy, w+dx]``, with
    ``(dx, dy) = shifts[:, a, b]`` (in ``[-delta, delta-1]``) at the a-th visited row and b-th visited
    column. A copied-from pixel may already have been
    overwritten earlier in the pass; then the value is that pixel's own source, recursively. Resolving
    these chains by pointer doubling gives *exactly* the sequential result, vectorised (with
    ``delta = 1`` every source lies up or left, not yet visited: there are no chains).

    ``shifts``: int ``[N, nh, nw, 2]`` (dx, dy) in visiting order, ``nh = nw = size - 2 delta``.
    Returns int64 ``[N, size*size]``: flat index into the pass's input for each flat output pixel.
    """
    n, area = shifts.shape[0], size * size
    pos, rank = _glass_visits(size, delta)
    src = (shifts[..., 1] * size + shifts[..., 0]).reshape(n, -1) + pos
    ptr = np.tile(np.arange(area), (n, 1))
    ptr[:, pos] = src
    follow = rank[src] < np.arange(pos.size)  # source visited earlier in the pass: take its source
    if not follow.any():
        return ptr
    offset = (np.arange(n) * area)[:, None]
    flat = (ptr + offset).reshape(-1)  # flat over the batch
    done = np.ones(n * area, dtype=bool)
    done.reshape(n, area)[:, pos] = ~follow
    active = np.flatnonzero(~done)
    while active.size:  # pointer doubling on the unresolved pixels only
        nxt = flat[active]
        flat[active], done[active] = flat[nxt], done[nxt]
        active = active[~done[active]]
    return flat.reshape(n, area) - offset


def glass_blur_apply(x: torch.Tensor, sigma: float, delta: int, shifts: np.ndarray) -> torch.Tensor:
    """Reference glass blur given the draws ``shifts [N, iterations, nh, nw, 2]`` (dx, dy).

    ``uint8(gaussian(x, sigma) * 255)`` (truncation), then each pass of local pixel copies
    (:func:`glass_sources`), then ``clip(gaussian(x / 255, sigma), 0, 1) * 255``. Gaussian: skimage
    defaults (nearest border, truncate 4). Computed in float64 like the reference, because the
    intermediate truncation to uint8 turns tiny rounding differences into whole grey levels.
    """
    n, size, _, ch = x.shape
    img = gaussian_filter(unit_float64(x), sigma).mul_(255).floor_()
    flat = img.reshape(n * size * size, ch)
    offset = np.arange(n)[:, None] * (size * size)
    for it in range(shifts.shape[1]):
        src = glass_sources(shifts[:, it], size, delta) + offset
        flat = flat.index_select(0, torch.as_tensor(src.reshape(-1), device=x.device))
    return gaussian_filter(flat.reshape(n, size, size, ch) / 255, sigma).clamp_(0, 1).mul_(255)


@register_corruption("glass_blur", group="blur", common=True)
def glass_blur(images: torch.Tensor, c: tuple, ctx: CorruptionContext) -> torch.Tensor:
    """Gaussian blur, ``iterations`` passes of random local pixel copies within ``max_delta``, blur again."""
    sigma, delta, iterations = c
    nside = images.shape[1] - 2 * delta
    shifts = np.empty((images.shape[0], iterations, nside, nside, 2), dtype=np.int64)
    for i, rng in enumerate(ctx.rngs):
        shifts[i] = rng.integers(-delta, delta, size=shifts.shape[1:])
    return glass_blur_apply(images, sigma, delta, shifts)


def motion_blur_apply(x: torch.Tensor, radius: float, sigma: float, angles: np.ndarray) -> torch.Tensor:
    """ImageMagick motion blur at ``angles`` (degrees, one per image), read back as 8-bit PNG values.

    The reference's greyscale branch (ImageMagick returns a grey PNG for a grey image, which is then
    stacked to 3 channels) gives the same numbers as blurring the 3 equal channels, so it needs no code.
    """
    angles_t = torch.as_tensor(np.asarray(angles, dtype=np.float64))
    return imagemagick_to_8bit(im_motion_blur(x, radius, sigma, angles_t) * 255)


@register_corruption("motion_blur", group="blur", common=True)
def motion_blur(images: torch.Tensor, c: tuple, ctx: CorruptionContext) -> torch.Tensor:
    """Motion blur ``(radius, sigma)`` along an angle ~ U(-45, 45) degrees per image."""
    angles = np.array([rng.uniform(-45, 45) for rng in ctx.rngs])
    return motion_blur_apply(images.float().div_(255), c[0], c[1], angles)


@register_corruption("zoom_blur", group="blur", common=True)
def zoom_blur(images: torch.Tensor, c: tuple, ctx: CorruptionContext) -> torch.Tensor:
    """Mean of the image and its :func:`clipped_zoom` at every factor of ``np.arange(start, stop, step)``
    (float32, ``x = image / 255``)."""
    zooms = np.arange(*c)
    x = images.float().div_(255)
    return zoom_sum(x, zooms).add_(x).div_(len(zooms) + 1).clamp_(0, 1).mul_(255)


@register_corruption("gaussian_blur", group="blur", common=False)
def gaussian_blur(images: torch.Tensor, c: float, ctx: CorruptionContext) -> torch.Tensor:
    """skimage ``gaussian(x, sigma=c)`` (nearest border, truncate 4, float64), ``clip * 255``."""
    return gaussian_filter(unit_float64(images), float(c)).clamp_(0, 1).mul_(255)
