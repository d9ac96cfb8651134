"""CIFAR-10 / CIFAR-100 from the official python-pickle folders, with optional MD5-checked download."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from smoothbench.data.download import download_and_extract, md5_file
from smoothbench.progress import Progress
from smoothbench.data.resident import ResidentImages
from smoothbench.data.unpickle import load_pickle
from smoothbench.errors import UserError, param


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant lives and how its official files are checked (MD5s as in torchvision)."""

    folder: str
    url: str
    archive_md5: str
    files: dict[str, tuple[tuple[str, str], ...]]  # split → ((file name, official md5), ...)
    meta_file: str
    label_key: bytes
    names_key: bytes


CIFAR: dict[str, CifarLayout] = {
    "cifar10": CifarLayout(
        folder="cifar-10-batches-py",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        archive_md5="c58f30108f718f92721af3b95e74349a",
        files={
            "train": (
                ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
            ),
            "test": (("test_batch", "40351d587109b95175f43aff81a1287e"),),
        },
        meta_file="batches.meta",
        label_key=b"labels",
        names_key=b"label_names",
    ),
    "cifar100": CifarLayout(
        folder="cifar-100-python",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
        files={
            "train": (("train", "16019d7e3df5f24257cddd939b257f8d"),),
            "test": (("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),),
        },
        meta_file="meta",
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
    ),
}


def download_cifar(
    name: str,
    data_dir: str | os.PathLike,
    *,
    url: str | None = None,
    md5: str | None = None,
    progress: Progress | None = None,
) -> None:
    """Fetch and unpack the official archive of ``name`` into ``data_dir`` (``url``/``md5`` override the official ones)."""
    layout = CIFAR[name]
    download_and_extract(url or layout.url, data_dir, md5 or layout.archive_md5, progress)


def _read_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = load_pickle(path)
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(label_key) if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(f"{path} is not a CIFAR batch (no uint8 [N, 3072] 'data'); replace it with the official file")
    if labels is None or len(labels) != len(data):
        raise UserError(f"{path} has no {label_key.decode()} list matching its images; replace it with the official file")
    return data.reshape(-1, 3, 32, 32), checked_labels(labels, num_classes, path)


def checked_labels(labels: object, num_classes: int, path: str | os.PathLike) -> np.ndarray:
    """``labels`` as int64 if every one is an integer class index in ``0..num_classes - 1``; otherwise a
    UserError naming the file ``path`` they came from."""
    array = np.asarray(labels)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        kind = f"{array.ndim}-D {array.dtype}" if array.ndim != 1 else f"{array.dtype} values"
        raise UserError(f"{path} holds {kind} labels, not integer class indices; replace it with a correct file")
    if len(array) and (array.min() < 0 or array.max() >= num_classes):
        raise UserError(f"{path} holds labels in {array.min()}..{array.max()}, outside the {num_classes} classes "
                        f"0..{num_classes - 1}; replace it with a correct file")
    return array.astype(np.int64, copy=False)


def load_cifar(
    name: str, data_dir: str | os.PathLike, split: str, *, download: bool = False, progress: Progress | None = None
) -> ResidentImages:
    """One split of CIFAR-10/100 from ``data_dir/<official folder>`` as a :class:`ResidentImages`.

    Missing files: downloaded when ``download`` is set, else :class:`UserError`. Files whose MD5
    differs from the official one (e.g. the shared JPEG-lossy copy) load with one warning.
    """
    layout = CIFAR[name]
    folder = Path(data_dir) / layout.folder
    needed = [folder / f for f, _ in layout.files[split]] + [folder / layout.meta_file]
    missing = [p for p in needed if not p.is_file()]
    if missing and download:
        download_cifar(name, data_dir, progress=progress)
        missing = [p for p in needed if not p.is_file()]
        if missing:
            raise UserError(f"the downloaded {name} archive has no {missing[0]}; check the URL or copy the folder by hand")
    if missing:
        raise UserError(
            f"{name} not found: {missing[0]} is missing; use {param('download')} to fetch the official archive, or copy "
            f"the official {layout.folder}/ folder into {data_dir}"
        )
    differs = [f for f, md5 in layout.files[split] if md5_file(folder / f) != md5]
    if differs:
        warnings.warn(
            f"{name} {split}: {', '.join(differs)} in {folder} differ from the official files (md5); "
            "results may not match published numbers",
            stacklevel=3,
        )
    meta = load_pickle(folder / layout.meta_file)
    names = meta.get(layout.names_key, []) if isinstance(meta, dict) else []
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in names]
    if len(classes) == 0:
        raise UserError(f"{folder / layout.meta_file} does not list the {name} class names; replace it with the official file")
    parts = [_read_batch(folder / f, layout.label_key, len(classes)) for f, _ in layout.files[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ResidentImages(name, split, torch.from_numpy(images), torch.from_numpy(labels), classes, source="clean")
