"""Digital corruptions: brightness, contrast, elastic_transform, pixelate, jpeg_compression (common)
and saturate (extra). Brightness is in the *weather* group (Hendrycks & Dietterich), but it shares its
HSV code with saturate, so it lives here.

The registered functions get the uint8 images ``[N,H,W,3]`` (``elastic_apply`` takes ``x = image /
255``, float32); outputs are on the 0..255 scale, clipped like the reference, in the reference's
precision (float64; float32 for elastic_transform; PIL uint8 for pixelate, jpeg).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from smoothbench.corruptions.kernels import (
    affine_transform_3pts,
    gaussian_filter,
    hsv_to_rgb,
    map_coordinates_linear,
    rgb_to_hsv,
    unit_float64,
    warp_affine_cv2,
)
from smoothbench.corruptions.registry import CorruptionContext, register_corruption


@register_corruption("brightness", group="weather", common=True)
def brightness(images: torch.Tensor, c: float, ctx: CorruptionContext) -> torch.Tensor:
    """HSV value + ``c`` (clipped to 1), back to RGB (skimage semantics), ``clip * 255``."""
    hsv = rgb_to_hsv(unit_float64(images))
    hsv[..., 2].add_(c).clamp_(0, 1)
    return hsv_to_rgb(hsv).clamp_(0, 1).mul_(255)


@register_corruption("contrast", group="digital", common=True)
def contrast(images: torch.Tensor, c: float, ctx: CorruptionContext) -> torch.Tensor:
    """``clip((x - m) c + m, 0, 1) * 255`` with ``m`` the per-image, per-channel mean over H, W."""
    x = unit_float64(images)
    means = x.mean(dim=(1, 2), keepdim=True)
    return x.sub_(means).mul_(c).add_(means).clamp_(0, 1).mul_(255)


@register_corruption("saturate", group="digital", common=False)
def saturate(images: torch.Tensor, c: tuple, ctx: CorruptionContext) -> torch.Tensor:
    """HSV saturation ``S c0 + c1`` (clipped to [0, 1]), back to RGB, ``clip * 255``."""
    hsv = rgb_to_hsv(unit_float64(images))
    hsv[..., 1].mul_(c[0]).add_(c[1]).clamp_(0, 1)
    return hsv_to_rgb(hsv).clamp_(0, 1).mul_(255)


def _from_numpy(arrays: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Per-image uint8 results -> one float32 tensor on ``device`` (0..255 scale)."""
    return torch.as_tensor(np.stack(arrays)).to(device=device, dtype=torch.float32)


@register_corruption("pixelate", group="digital", common=True)
def pixelate(images: torch.Tensor, c: float, ctx: CorruptionContext) -> torch.Tensor:
    """PIL BOX resize to ``int(S c)`` pixels and back to ``S`` (per image, on CPU, as the reference)."""
    size = images.shape[1]
    small = int(size * c)
    out = []
    for img in images.cpu().numpy():
        pil = Image.fromarray(img).resize((small, small), Image.BOX).resize((size, size), Image.BOX)
        out.append(np.asarray(pil))
    return _from_numpy(out, images.device)


@register_corruption("jpeg_compression", group="digital", common=True)
def jpeg_compression(images: torch.Tensor, c: int, ctx: CorruptionContext) -> torch.Tensor:
    """PIL JPEG encode at quality ``c`` (PIL defaults otherwise) and decode (per image, on CPU).

    The reference decodes with ``Image.open(...)`` (then ``convert('RGB')``, a copy for an RGB JPEG);
    here PIL's JPEG decoder reads the bytes directly (``Image.frombytes(..., "jpeg", "RGB", "")``,
    what ``Image.open`` sets up for an RGB JPEG), skipping the Python header parsing of
    ``Image.open``: the same libjpeg decode, without the per-image header parsing that dominates at 32 px.
    """
    size = (images.shape[2], images.shape[1])
    out = []
    for img in images.cpu().numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=int(c))
        out.append(np.asarray(Image.frombytes("RGB", size, buf.getvalue(), "jpeg", "RGB", "")))
    return _from_numpy(out, images.device)


def elastic_points(size: int) -> np.ndarray:
    """The reference's three affine anchor points (float32 ``[3, 2]``) for a ``size`` x ``size`` image."""
    centre = np.float32([size, size]) // 2
    half = size // 3
    return np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])


def elastic_apply(x: torch.Tensor, c: tuple, jitter: np.ndarray, ux: np.ndarray, uy: np.ndarray) -> torch.Tensor:
    """Reference elastic transform given the draws: ``jitter [N,3,2]`` ~ U(-c2, c2), ``ux``, ``uy [N,S,S]`` ~ U(-1, 1).

    1. Random affine: OpenCV ``getAffineTransform(pts, pts + jitter)`` and ``warpAffine`` (bilinear,
       reflect-101 border), see :func:`warp_affine_cv2`.
    2. Displacements ``dx = float32(gaussian(ux, c1, mode='reflect', truncate=3) * c0)``, ``dy`` alike.
    3. ``map_coordinates(image, (i + dy, j + dx), order=1, mode='reflect')``, then ``clip * 255``.
    """
    alpha, sigma, _ = c
    size = x.shape[1]
    pts = elastic_points(size)
    matrices = affine_transform_3pts(pts, pts[None] + jitter.astype(np.float32))
    warped = warp_affine_cv2(x, matrices, "mirror")
    fields = torch.as_tensor(np.stack([ux, uy], axis=-1), dtype=torch.float64, device=x.device)
    disp = (gaussian_filter(fields, sigma, mode="reflect", truncate=3) * alpha).float().double()
    grid = torch.arange(size, dtype=torch.float64, device=x.device)
    rows = grid[None, :, None] + disp[..., 1]
    cols = grid[None, None, :] + disp[..., 0]
    return map_coordinates_linear(warped, rows, cols, "reflect").clamp_(0, 1).mul_(255)


@register_corruption("elastic_transform", group="digital", common=True)
def elastic_transform(images: torch.Tensor, c: tuple, ctx: CorruptionContext) -> torch.Tensor:
    """Random affine jitter of three anchor points, then a smoothed random displacement field."""
    n, size = images.shape[0], images.shape[1]
    jitter, fields = np.empty((n, 3, 2)), np.empty((n, 2, size, size))
    for i, rng in enumerate(ctx.rngs):
        jitter[i] = rng.uniform(-c[2], c[2], size=(3, 2))
        fields[i] = rng.uniform(-1, 1, size=(2, size, size))  # ux, then uy: the reference's two draws
    return elastic_apply(images.float().div_(255), c, jitter, fields[:, 0], fields[:, 1])
