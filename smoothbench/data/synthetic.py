"""The embedded ``synthetic`` dataset: 10 classes of 32×32 RGB shapes and textures, generated from a seed.

Each image is one object on a random background. The class is the object's *shape*; everything else is
nuisance: object colour, position (±6 px), size (radius 6–11 px), rotation (±20°), aspect ratio
(0.8–1.25), a two-colour gradient background with low-frequency texture, a distractor blob in half of
the images, contrast/brightness jitter and Gaussian pixel noise. 15 % of the images get low contrast and
strong noise, so some cases stay ambiguous and calibration metrics have errors to measure.
Measured (one shared CPU thread, 2026-11): ResNet-18 at width 4, SGD one-cycle lr 0.1, batch 64, reaches
86 % test accuracy after 6 epochs (34 CPU-s) and 90 % (NLL 0.30) after 10 epochs (67 CPU-s).

Sizes: train 5,000 and test 2,000 images, 500 / 200 per class. The two splits come from independent
streams of ``numpy.random.SeedSequence([seed, split index])``; everything is deterministic given the
seed.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from smoothbench.data.resident import ResidentImages

CLASSES = (
    "disk", "ring", "square", "diamond", "triangle", "plus", "cross", "hstripes", "vstripes", "checker",
)  # fmt: skip
SIZES = {"train": 5000, "test": 2000}
DEFAULT_SEED = 0  # the embedded dataset is one fixed set
IMAGE_SIZE = 32
SUPERSAMPLE = 2  # shapes are rasterised at 2× and averaged down, giving anti-aliased edges
CHUNK = 500  # images rendered at once (bounds memory)
HARD_FRACTION = 0.15


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    radius = np.hypot(u, v)
    return (radius <= 1.0) & (radius >= 0.55)


def _plus(u: np.ndarray, v: np.ndarray, arm: float = 0.3, length: float = 1.0) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= arm) & (av <= length)) | ((av <= arm) & (au <= length))


def _box(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v))


# Object region of each class, from object coordinates u (right) and v (down) in object radii.
_REGIONS = (
    lambda u, v: np.hypot(u, v) <= 1.0,
    _ring,
    lambda u, v: _box(u, v) <= 0.85,
    lambda u, v: np.abs(u) + np.abs(v) <= 1.1,
    lambda u, v: (v <= 0.8) & (np.abs(u) <= (v + 0.9) / 1.7),
    _plus,
    lambda u, v: _plus((u + v) / np.sqrt(2), (u - v) / np.sqrt(2), 0.28, 1.1),
    lambda u, v: (_box(u, v) <= 0.9) & (np.cos(v * np.pi * 2.2) > 0),
    lambda u, v: (_box(u, v) <= 0.9) & (np.cos(u * np.pi * 2.2) > 0),
    lambda u, v: (_box(u, v) <= 0.9) & (np.sin(u * np.pi * 1.6) * np.sin(v * np.pi * 1.6) > 0),
)


def _smooth_texture(coarse: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of (B, C, k, k) noise to (B, size, size, C), as two small matrix products."""
    k = coarse.shape[-1]
    weights = F.interpolate(torch.eye(k)[:, None, :], size=size, mode="linear", align_corners=False)
    w = weights[:, 0, :].T.numpy()  # (size, k): row y holds the interpolation weights of output pixel y
    return np.ascontiguousarray((w @ coarse @ w.T).transpose(0, 2, 3, 1))


def _render(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Float32 images in [0, 1], shape (B, 32, 32, 3), for the given labels; all randomness from ``rng``."""
    n, size = len(labels), IMAGE_SIZE

    def per_image(low: float, high: float, *shape: int) -> np.ndarray:
        return rng.uniform(low, high, (n, *shape)).astype(np.float32)[:, None, None]

    # Object: anti-aliased mask from coordinates on a SUPERSAMPLE× finer grid.
    fine = (np.arange(size * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE
    cx, cy = per_image(10, 22), per_image(10, 22)
    radius, theta = per_image(6, 11), np.deg2rad(per_image(-20, 20))
    aspect = np.sqrt(per_image(0.8, 1.25))
    dx, dy = fine[None, None, :] - cx, fine[None, :, None] - cy
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / (radius / aspect)
    v = (dy * np.cos(theta) - dx * np.sin(theta)) / (radius * aspect)
    mask = np.zeros(u.shape, dtype=np.float32)
    for k, region in enumerate(_REGIONS):
        rows = labels == k
        mask[rows] = region(u[rows], v[rows])
    alpha = mask.reshape(n, size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(2, 4))[..., None]

    # Background: a linear gradient between two random colours plus a smooth random texture.
    ramp_axis = np.linspace(0, 1, size, dtype=np.float32)
    angle = per_image(0, 2 * np.pi)
    ramp = np.cos(angle) * ramp_axis[None, None, :] + np.sin(angle) * ramp_axis[None, :, None]
    ramp = (ramp - ramp.min(axis=(1, 2), keepdims=True)) / np.ptp(ramp, axis=(1, 2), keepdims=True)
    c1, c2 = per_image(0, 1, 3), per_image(0, 1, 3)
    texture = _smooth_texture(rng.normal(0, 0.1, (n, 3, 5, 5)).astype(np.float32), size)
    background = c1 + (c2 - c1) * ramp[..., None] + texture

    # Object colour: random, pushed away from the mean background luminance so the shape stays visible.
    fg = per_image(0, 1, 3)
    lum = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gap = (fg - background.mean(axis=(1, 2), keepdims=True)) @ lum
    fg = fg + np.where(np.abs(gap) < 0.25, np.copysign(0.35, gap), 0)[..., None]
    image = background + (fg - background) * alpha

    # Distractor: a small disk of random colour in half of the images.
    coarse = np.arange(size, dtype=np.float32) + 0.5
    bx, by, br = per_image(2, 30), per_image(2, 30), per_image(1.5, 3.5)
    blob = (coarse[None, None, :] - bx) ** 2 + (coarse[None, :, None] - by) ** 2 <= br**2
    blob &= (rng.uniform(0, 1, n) < 0.5)[:, None, None]
    image = np.where(blob[..., None], per_image(0, 1, 3), image)

    # Photometric jitter and pixel noise. A random HARD_FRACTION of the images gets low contrast and strong
    # noise: genuinely ambiguous cases, so that even a good model stays uncertain on some of them.
    hard = (rng.uniform(0, 1, n) < HARD_FRACTION)[:, None, None, None]
    contrast = np.where(hard, per_image(0.25, 0.45)[..., None], per_image(0.7, 1.2)[..., None])
    sigma = np.where(hard, per_image(0.15, 0.25)[..., None], per_image(0.03, 0.08)[..., None])
    brightness = per_image(-0.15, 0.15)[..., None]
    noise = sigma * rng.standard_normal(image.shape, dtype=np.float32)
    image = (image - 0.5) * contrast + (0.5 + brightness) + noise
    return np.clip(image, 0, 1)


def make_synthetic(split: str, *, seed: int = 0, size: int | None = None) -> ResidentImages:
    """The ``synthetic`` split (``"train"`` or ``"test"``) generated from ``seed``; ``size`` overrides the default."""
    n = SIZES[split] if size is None else size
    rng = np.random.default_rng(np.random.SeedSequence([seed, list(SIZES).index(split)]))
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    chunks = [_render(labels[i : i + CHUNK], rng) for i in range(0, n, CHUNK)]
    images = np.round(np.concatenate(chunks) * 255).astype(np.uint8)
    return ResidentImages.from_numpy("synthetic", split, images, labels, CLASSES, source="clean")


@functools.lru_cache(maxsize=2)
def default_synthetic(split: str) -> ResidentImages:
    """The embedded default set (``DEFAULT_SEED``, default sizes), generated once per process and shared."""
    return make_synthetic(split, seed=DEFAULT_SEED)
