"""Released CIFAR-10-P (Hendrycks & Dietterich 2019): memory-mapped ``<name>.npy`` sequences.

The release holds one ``<perturbation>.npy`` per perturbation, uint8 (10000, T, 32, 32, 3), frames in
order, images in CIFAR-10 test order (no labels file: the labels are CIFAR-10's test labels).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from smoothbench.errors import UserError
from smoothbench.schema import PERTURBATIONS

#: Frames per sequence in the release: the 10 evaluated perturbations first (cifar-p-eval.py order),
#: then the 4 extra ones the release also ships.
RELEASED_FRAMES: dict[str, int] = {p.name: p.frames for p in PERTURBATIONS} | {
    "speckle_noise": 31, "gaussian_blur": 31, "snow": 31, "shear": 31,
}

_FOLDER_NAMES = ("CIFAR-10-P", "cifar-10-p")
_NAME = re.compile(r"^[a-z0-9_]+$")
_DOWNLOAD_HINT = "download CIFAR-10-P (see the hendrycks/robustness README) and extract it there"


def _resolve_dir(root: str | Path) -> Path:
    """The folder holding the ``.npy`` files: ``root`` itself, ``root/CIFAR-10-P`` or ``root/cifar-10-p``."""
    root = Path(root).expanduser()
    for folder in (*(root / n for n in _FOLDER_NAMES), root):
        if folder.is_dir() and any(folder.glob("*.npy")):
            return folder
    raise UserError(f"no CIFAR-10-P .npy files in {root} or {root}/CIFAR-10-P: {_DOWNLOAD_HINT}")


def available_perturbations(root: str | Path) -> list[str]:
    """Perturbation names with a ``.npy`` file under ``root``: known ones in release order, then others sorted."""
    stems = {p.stem for p in _resolve_dir(root).glob("*.npy")} - {"labels"}
    known = [n for n in RELEASED_FRAMES if n in stems]
    return known + sorted(stems - set(known))


def load_cifar10_p(root: str | Path, name: str) -> np.ndarray:
    """Memory-mapped uint8 (N, T, 32, 32, 3) sequences of perturbation ``name`` from ``root``.

    Checks dtype, rank, the 32x32x3 frame shape and, for the released names, T (RELEASED_FRAMES).
    """
    if not _NAME.match(name):
        raise UserError(f"invalid perturbation name {name!r}: use one of {', '.join(RELEASED_FRAMES)}")
    folder = _resolve_dir(root)
    path = folder / f"{name}.npy"
    if not path.is_file():
        have = ", ".join(available_perturbations(root)) or "none"
        raise UserError(f"{path} not found (available: {have}): {_DOWNLOAD_HINT}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise UserError(f"{path} is not a readable .npy array ({exc}): re-download CIFAR-10-P") from exc
    expected_t = RELEASED_FRAMES.get(name)
    shape_ok = arr.ndim == 5 and arr.shape[2:] == (32, 32, 3)
    if arr.dtype != np.uint8 or not shape_ok or (expected_t is not None and arr.shape[1] != expected_t):
        want = f"(N, {expected_t if expected_t is not None else 'T'}, 32, 32, 3)"
        raise UserError(
            f"{path} has dtype {arr.dtype} and shape {arr.shape}, expected uint8 {want}: "
            "the file is truncated or not CIFAR-10-P; re-download it"
        )
    return arr
