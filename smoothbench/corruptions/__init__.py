"""The corruption engine: CIFAR-10-C / ImageNet-C corruptions, batched in torch, seeded per image.

``corrupt(images, name, severity)`` reproduces the function ``name`` of the reference creation scripts
(hendrycks/robustness ``make_cifar_c.py`` with ``params="cifar"``, ``make_imagenet_c.py`` with
``params="imagenet"``) on a batch of uint8 images, including the final ``np.uint8`` truncation.
Random draws come from one generator per image (:mod:`smoothbench.corruptions.rng`), so the output
of image ``start_index + i`` never depends on the batch it is processed in, the device or the number
of processes. The ImageNet-C pipeline resizes to 256 and centre-crops 224 *before* corrupting
(:func:`imagenet_preprocess`) and saves JPEG quality 85 *after*; neither is done by ``corrupt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from smoothbench.corruptions import blur, digital, noise  # noqa: F401  (register their corruptions)
from smoothbench.corruptions.params import IMAGE_SIZE, PARAMS
from smoothbench.corruptions.registry import (
    CorruptionContext,
    canonical_names,
    get_corruption,
    register_corruption,
)
from smoothbench.corruptions.rng import LazyGenerators, image_generators
from smoothbench.device import resolve_device
from smoothbench.errors import UserError
from smoothbench.progress import Progress

# The weather corruptions (snow, frost, fog, spatter) live in weather.py, written separately.
if Path(__file__).with_name("weather.py").exists():
    from smoothbench.corruptions import weather  # noqa: F401

__all__ = [
    "PARAMS",
    "CorruptionContext",
    "corrupt",
    "image_generators",
    "imagenet_preprocess",
    "names",
    "register_corruption",
]

# Pixels per internal batch: on CPU small enough to stay in cache (64 CIFAR images, 1 ImageNet
# image; much larger chunks spill out of it), on a GPU large enough to fill it.
_PIXELS_PER_CHUNK = {"cpu": 1 << 16, "cuda": 1 << 22}


def names(subset: str = "common") -> list[str]:
    """Corruption names in the reference order.

    ``subset``: ``common`` (the 15 of CIFAR-10-C / ImageNet-C), ``extra`` (speckle_noise,
    gaussian_blur, spatter, saturate), ``all`` (19), or a group: ``noise``, ``blur``, ``weather``
    (snow, frost, fog, brightness, spatter), ``digital``.
    """
    return canonical_names(subset)


def _check_images(images: np.ndarray | torch.Tensor, table: str) -> None:
    dtype_ok = images.dtype == (torch.uint8 if isinstance(images, torch.Tensor) else np.uint8)
    if not dtype_ok:
        raise UserError(f"images must be uint8 (got {images.dtype}): pass the raw 0..255 pixels")
    if images.ndim != 4 or images.shape[3] != 3:
        raise UserError(f"images must have shape (N, H, W, 3) (got {tuple(images.shape)}): stack RGB images channels-last")
    side = IMAGE_SIZE[table]
    if images.shape[1] != side or images.shape[2] != side:
        hint = "use imagenet_preprocess() (resize 256, centre-crop 224) first" if table == "imagenet" else "use params='imagenet' on 224x224 images"
        raise UserError(f"params={table!r} is defined for {side}x{side} images (got {images.shape[1]}x{images.shape[2]}): {hint}")


def corrupt(
    images: np.ndarray | torch.Tensor,
    name: str,
    severity: int,
    *,
    params: str = "cifar",
    seed: int = 0,
    start_index: int = 0,
    device: str | torch.device = "cpu",
    frost_dir: str | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray | torch.Tensor:
    """Corrupt uint8 images ``(N, H, W, 3)`` with corruption ``name`` at ``severity`` 1..5.

    ``params`` picks the reference table (``cifar`` for 32x32, ``imagenet`` for 224x224); image ``i``
    uses generator ``(seed, name, severity, start_index + i)``; ``device``: auto, cpu, cuda[:N]. Returns uint8 of the same shape and
    type (numpy in, numpy out; a torch tensor comes back on its own device), computed as
    ``floor(f(image / 255))`` like the reference's ``np.uint8`` (NaN -> 0). ``batch_size`` sets
    the internal chunk (default: 64K pixels on CPU, 4M on GPU); ``progress.advance(n_done, text)`` is called
    per chunk.
    """
    fn = get_corruption(name).fn
    if params not in PARAMS:
        raise UserError(f"unknown parameter table {params!r}: use 'cifar' or 'imagenet'")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise UserError(f"severity must be an integer 1..5 (got {severity!r})")
    if not isinstance(images, (np.ndarray, torch.Tensor)):
        raise UserError(f"images must be a numpy array or torch tensor (got {type(images).__name__})")
    _check_images(images, params)
    if batch_size is not None and batch_size < 1:
        raise UserError(f"batch_size must be >= 1 (got {batch_size})")
    dev = resolve_device(str(device))
    severity = int(severity)
    c = PARAMS[params][name][severity - 1]
    n = images.shape[0]
    budget = _PIXELS_PER_CHUNK.get(dev.type, _PIXELS_PER_CHUNK["cuda"])
    chunk = batch_size or max(1, budget // (images.shape[1] * images.shape[2]))
    source = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    out = torch.empty(source.shape, dtype=torch.uint8, device=source.device)
    rngs, run = LazyGenerators(seed, name, severity, start_index, n), {}
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        ctx = CorruptionContext(
            rngs=rngs.chunk(lo, hi),
            table=params,
            severity=severity,
            device=dev,
            frost_dir=frost_dir,
            run=run,
        )
        y = fn(source[lo:hi].to(dev), c, ctx).nan_to_num_(nan=0.0).clamp_(0, 255)
        out[lo:hi].copy_(y)  # conversion to uint8 truncates: floor on [0, 255]
        if progress is not None:
            progress.advance(hi - lo, f"{name} s{severity}")
    return out if isinstance(images, torch.Tensor) else out.numpy()


def imagenet_preprocess(image: Image.Image | np.ndarray) -> np.ndarray:
    """The ImageNet-C input pipeline before corrupting: RGB, Resize(256) (bilinear, shorter side),
    CenterCrop(224), as torchvision does on PIL images. Returns uint8 ``(224, 224, 3)``.
    """
    from torchvision.transforms import functional as tvf

    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise UserError(f"image must be a uint8 (H, W) or (H, W, C) array (got {image.dtype}, {image.shape})")
        image = Image.fromarray(image)
    elif not isinstance(image, Image.Image):
        raise UserError(f"image must be a PIL image or a uint8 array (got {type(image).__name__})")
    resized = tvf.resize(image.convert("RGB"), 256, interpolation=tvf.InterpolationMode.BILINEAR)
    return np.asarray(tvf.center_crop(resized, 224), dtype=np.uint8)
