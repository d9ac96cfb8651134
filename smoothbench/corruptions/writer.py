"""Writing corrupted sets in the released layouts (``smoothbench data make-c``), resumably.

- :func:`make_cifar_c`: ``<out>/<corruption>.npy`` uint8 (5·N, H, W, 3), severity-major (rows
  ``N(s-1) .. Ns - 1`` are severity ``s``), plus ``labels.npy`` (the labels tiled 5 times), i.e. the
  CIFAR-10-C / CIFAR-100-C layout that :func:`~smoothbench.corruptions.released.load_cifar_c` reads.
- :func:`make_imagenet_c`: ``<out>/<corruption>/<severity>/<wnid>/<stem>.JPEG`` after Resize(256) +
  CenterCrop(224), corruption with the ``imagenet`` table, and JPEG quality 85 (as make_imagenet_c.py).

Resuming: every file is written through :func:`~smoothbench.fileio.atomic_open`, so a killed run
leaves complete files only (a ``.npy`` is streamed batch by batch into the temporary file, which
holds the partial work until the rename). A rerun skips complete files (``.npy`` files are checked
for dtype and shape) and redoes the rest; draws are per image (seed, corruption, severity, index),
so the output is the same however often the run was interrupted. ``smoothbench-make-c.json`` in the
output folder records the seed, table and (CIFAR) the SHA-256 of the source images, and a rerun with
different ones is refused rather than mixing two sets.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from smoothbench.corruptions import corrupt, imagenet_preprocess
from smoothbench.corruptions.registry import get_corruption
from smoothbench.corruptions.released import MANIFEST
from smoothbench.data.subset import sample_indices
from smoothbench.errors import UserError
from smoothbench.fileio import atomic_open
from smoothbench.progress import Progress


SEVERITIES = (1, 2, 3, 4, 5)
#: ImageNet-C's JPEG quality (make_imagenet_c.py saves with ``quality=85, optimize=True``).
JPEG_QUALITY = 85


def _check_corruptions(corruptions: Sequence[str]) -> list[str]:
    names = list(corruptions)
    if not names:
        raise UserError("no corruptions chosen: pass at least one corruption name")
    for name in names:
        get_corruption(name)
    return names


def _claim_folder(out: Path, manifest: dict[str, object]) -> None:
    """Write the manifest into ``out``, or check that the one already there says the same."""
    path = out / MANIFEST
    if path.is_file():
        try:
            have = json.loads(path.read_text())
        except (OSError, ValueError):
            have = None
        if have != manifest:
            raise UserError(
                f"{out} already holds a set made with other settings or images ({path.name}: {have}); "
                "write into an empty folder, or rerun with the same images and seed to resume"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)


def _is_complete(path: Path, shape: tuple[int, ...]) -> bool:
    """Whether ``path`` is a readable uint8 ``.npy`` of exactly ``shape``."""
    if not path.is_file():
        return False
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError):
        return False
    return array.dtype == np.uint8 and array.shape == shape


def _holds(path: Path, array: np.ndarray) -> bool:
    """Whether ``path`` is a ``.npy`` file equal to ``array`` (same dtype, shape and values)."""
    if not path.is_file():
        return False
    try:
        have = np.load(path, allow_pickle=False)
    except (ValueError, OSError):
        return False
    return have.dtype == array.dtype and np.array_equal(have, array)


def _drop_stale_partials(path: Path) -> None:
    """Remove temporary files a killed run left for ``path`` (atomic_open names them ``.<name>.*.tmp``)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def _sha256(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()


def make_cifar_c(
    images_nhwc_uint8: np.ndarray,
    labels: np.ndarray | Sequence[int],
    out_dir: str | os.PathLike,
    *,
    corruptions: Sequence[str],
    params: str = "cifar",
    seed: int = 0,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    frost_dir: str | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """Write ``<corruption>.npy`` (5 severities) for each of ``corruptions`` plus ``labels.npy``.

    Image ``i`` at severity ``s`` is ``corrupt(images[i], corruption, s, params, seed, start_index=i)``,
    computed ``batch_size`` images at a time on ``device``. ``progress.advance(n, text)`` gets the number of
    images just finished (skipped files count as finished). Returns the corruption file paths.
    """
    images = np.asarray(images_nhwc_uint8)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or len(images) == 0:
        raise UserError(f"images must be a non-empty uint8 (N, H, W, 3) array, got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise UserError(f"labels must have shape ({len(images)},) to match the images, got {labels.shape}")
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1 (got {batch_size})")
    names = _check_corruptions(corruptions)
    out = Path(out_dir)
    _claim_folder(out, {"format": "cifar-c", "params": params, "seed": seed, "images_sha256": _sha256(images, labels)})
    n = len(images)
    label_dtype = np.uint8 if labels.min() >= 0 and labels.max() < 256 else np.int64
    tiled = np.tile(labels.astype(label_dtype), len(SEVERITIES))
    labels_path = out / "labels.npy"
    if not _holds(labels_path, tiled):
        with atomic_open(labels_path, "wb") as handle:
            np.save(handle, tiled)
    shape = (len(SEVERITIES) * n, *images.shape[1:])
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
    written = []
    for name in names:
        target = out / f"{name}.npy"
        written.append(target)
        if _is_complete(target, shape):
            if progress is not None:
                progress.advance(shape[0], f"{name}: already written")
            continue
        _drop_stale_partials(target)
        with atomic_open(target, "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, header)
            for severity in SEVERITIES:
                for lo in range(0, n, batch_size):
                    hi = min(n, lo + batch_size)
                    batch = corrupt(images[lo:hi], name, severity, params=params, seed=seed, start_index=lo,
                                    device=device, frost_dir=frost_dir)
                    handle.write(np.ascontiguousarray(batch).tobytes())
                    if progress is not None:
                        progress.advance(hi - lo, f"{name} s{severity}")
    return written


def imagenet_val_folder(val_dir: str | os.PathLike) -> Path:
    """The folder of WNID subfolders: ``val_dir/val`` when ``val_dir`` is an ImageNet root, else ``val_dir``."""
    folder = Path(val_dir).expanduser()
    if (folder / "val").is_dir():
        folder = folder / "val"
    if not folder.is_dir():
        raise UserError(f"ImageNet validation folder {folder} not found: pass the folder holding the <wnid>/ folders")
    return folder


def _load_preprocessed(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return imagenet_preprocess(image)


def _save_jpeg(pixels: np.ndarray, target: Path) -> None:
    with atomic_open(target, "wb") as handle:
        Image.fromarray(pixels).save(handle, format="JPEG", quality=JPEG_QUALITY, optimize=True)


def make_imagenet_c(
    val_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    corruptions: Sequence[str],
    seed: int = 0,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    frost_dir: str | None = None,
    progress: Progress | None = None,
    subset: int | None = None,
) -> Path:
    """Write ImageNet-C for ``corruptions`` from the validation images under ``val_dir``.

    Images are taken in sorted (WNID, file) order, with ``subset`` the class-balanced sample of N of them
    that an evaluation with ``subset=N`` sees (:func:`~smoothbench.data.subset.sample_indices`); image ``i``
    at severity ``s`` is ``corrupt(preprocess(image_i), corruption, s, params="imagenet", seed,
    start_index=i)`` saved as JPEG quality 85 under its own WNID folder and file stem. Every WNID
    folder is created (empty ones too), so class indices from sorted folders match ImageNet's.
    Images already written are skipped; ``progress`` counts images (written or skipped).
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1 (got {batch_size})")
    names = _check_corruptions(corruptions)
    folder = imagenet_val_folder(val_dir)
    classes, class_to_idx = find_classes(str(folder))
    samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    if not samples:
        raise UserError(f"no images found under {folder}/<wnid>/: pass the ImageNet validation folder")
    if subset is not None:  # the images get_dataset("imagenet", ..., "test", subset=N) keeps
        labels = np.asarray([label for _, label in samples])
        samples = [samples[i] for i in sample_indices(labels, subset, len(classes), "ImageNet val")]
    out = Path(out_dir)
    _claim_folder(out, {"format": "imagenet-c", "params": "imagenet", "seed": seed})
    for name in names:
        for severity in SEVERITIES:
            for wnid in classes:
                (out / name / str(severity) / wnid).mkdir(parents=True, exist_ok=True)
        for lo in range(0, len(samples), batch_size):
            chunk = samples[lo : lo + batch_size]
            targets = {
                s: [out / name / str(s) / classes[label] / f"{Path(path).stem}.JPEG" for path, label in chunk]
                for s in SEVERITIES
            }
            missing = {s: [not t.is_file() for t in targets[s]] for s in SEVERITIES}
            if not any(any(m) for m in missing.values()):
                if progress is not None:
                    progress.advance(len(SEVERITIES) * len(chunk), f"{name}: already written")
                continue
            batch = np.stack([_load_preprocessed(path) for path, _ in chunk])
            for severity in SEVERITIES:
                if any(missing[severity]):
                    result = corrupt(batch, name, severity, params="imagenet", seed=seed, start_index=lo,
                                     device=device, frost_dir=frost_dir)
                    for pixels, target, todo in zip(result, targets[severity], missing[severity]):
                        if todo:
                            _save_jpeg(pixels, target)
                if progress is not None:
                    progress.advance(len(chunk), f"{name} s{severity}")
    return out
