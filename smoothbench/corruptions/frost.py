"""Frost textures: find, fetch (SHA-256 checked), decode and cache the six reference frost images.

The ``frost`` corruption overlays a random crop of one of the images ``frost1.png .. frost6.jpg`` of
hendrycks/robustness (``ImageNet-C/create_c/``, commit 8190fe32, Apache-2.0). They are not shipped
with smoothbench: :func:`frost_textures` looks for them, in order, in

1. the ``frost_dir`` argument,
2. the folder named by the environment variable ``SMOOTHBENCH_FROST_DIR``,
3. the cache folder ``$SMOOTHBENCH_CACHE/frost`` (default ``~/.cache/smoothbench/frost``), which is
   filled on first use from the public raw files of that commit.

Every file is checked against the SHA-256 digests below (once per process); a file that does not
match is refused with a :class:`~smoothbench.errors.UserError` (and a download that does not match is
not kept).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from smoothbench.errors import UserError
from smoothbench.fileio import atomic_open, sha256_file

FROST_COMMIT = "8190fe329f5f072a06e3a2aea02bb5dda69aed9f"
FROST_BASE_URL = f"https://raw.githubusercontent.com/hendrycks/robustness/{FROST_COMMIT}/ImageNet-C/create_c"

#: file name -> SHA-256 of the reference bytes, in the reference's list order (frost1 .. frost6).
FROST_SHA256: dict[str, str] = {
    "frost1.png": "ff9f907860bd7a835d459e32f9d588062b7f61ee267343cc7222b56753a14755",
    "frost2.png": "fe211a89b336999c207a852ce05818d4545d0b57c5beadd824b4cc9d9a9b6137",
    "frost3.png": "2d0d50b4a9bb213f38b024ef7768731bb83cc08d2f26b5766bbc167cdfa0e504",
    "frost4.jpg": "3f8b91ca1a9fa7167b09e773da53f5ae60d0a1fd88f02a783f6e328a72887f6e",
    "frost5.jpg": "5fc6a19df4a429ba68abdcc8f8a4278d4c9f81c9ccafd2c92ab0c8cf8992ebd2",
    "frost6.jpg": "1f92b2f48408748085b68dd81d816ef239f42cef3029c25d041fcb6760fb4f25",
}
FROST_FILES: tuple[str, ...] = tuple(FROST_SHA256)

#: make_cifar_c.py shrinks each texture with ``cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)``.
CIFAR_SHRINK = 0.2

_TEXTURES: dict[tuple[str, str], list[np.ndarray]] = {}
_VERIFIED: set[tuple[str, int, int]] = set()


def cache_frost_dir() -> Path:
    """``$SMOOTHBENCH_CACHE/frost``, or ``~/.cache/smoothbench/frost`` when that variable is unset."""
    root = os.environ.get("SMOOTHBENCH_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "smoothbench") / "frost"


def _verify(path: Path) -> None:
    """UserError unless ``path`` has the reference SHA-256 (verdict cached by path, size and mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return
    digest = sha256_file(path)
    if digest != FROST_SHA256[path.name]:
        raise UserError(
            f"frost texture {path} is not the reference file (sha256 {digest[:12]}…); "
            f"delete it, or point SMOOTHBENCH_FROST_DIR at a folder with the original images"
        )
    _VERIFIED.add(key)


def _download(name: str, dest: Path, base_url: str) -> None:
    """Stream ``base_url/name`` into ``dest`` atomically; refuse (and drop) it unless its SHA-256 matches."""
    url = f"{base_url.rstrip('/')}/{name}"
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_open(dest, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                digest.update(block)
            if digest.hexdigest() != FROST_SHA256[name]:
                raise UserError(
                    f"download of {url} does not match the reference frost texture (sha256 "
                    f"{digest.hexdigest()[:12]}…); it was not kept: run again, or set SMOOTHBENCH_FROST_DIR "
                    f"to a folder with the original images"
                )
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(
            f"could not download frost texture {url} ({exc}); set SMOOTHBENCH_FROST_DIR to a folder "
            f"holding {', '.join(FROST_FILES)}"
        ) from None


def resolve_frost_dir(frost_dir: str | os.PathLike | None = None, *, base_url: str = FROST_BASE_URL) -> Path:
    """The folder holding all six verified textures (see the module docstring for the search order).

    An explicit folder (argument or ``SMOOTHBENCH_FROST_DIR``) must already hold the files; only the
    cache folder is filled by downloading from ``base_url`` (any ``urllib`` URL, ``file://`` included).
    """
    explicit = frost_dir if frost_dir is not None else os.environ.get("SMOOTHBENCH_FROST_DIR") or None
    if explicit is not None:
        folder = Path(explicit).expanduser()
        missing = [name for name in FROST_FILES if not (folder / name).is_file()]
        if missing:
            raise UserError(
                f"frost folder {folder} lacks {', '.join(missing)}; point it at a folder with "
                f"{', '.join(FROST_FILES)} (from hendrycks/robustness ImageNet-C/create_c)"
            )
    else:
        folder = cache_frost_dir()
        for name in FROST_FILES:
            if not (folder / name).is_file():
                _download(name, folder / name, base_url)
    for name in FROST_FILES:
        _verify(folder / name)
    return folder


def _shrink_like_cv2(image: np.ndarray, factor: float) -> np.ndarray:
    """``cv2.resize(image, (0, 0), fx=factor, fy=factor)`` (INTER_LINEAR) on a uint8 (H,W,3) image.

    Output size ``round(H*factor) x round(W*factor)`` (half to even, like ``saturate_cast<int>``);
    output pixel ``d`` samples source position ``(d + 0.5)/factor - 0.5`` bilinearly, positions left of
    0 or right of the last pixel are clamped to it, and the result is rounded to uint8. For the
    reference factor 0.2 every position is the integer ``5d + 2``, so this is an exact subsample and
    OpenCV's 11-bit fixed-point weights play no part.
    """

    def taps(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = int(np.rint(size * factor))
        pos = ((np.arange(out) + 0.5) * (1.0 / factor) - 0.5).astype(np.float32)
        lo = np.floor(pos).astype(np.int64)
        frac = (pos - lo).astype(np.float64)
        frac[lo < 0] = 0.0
        lo = np.clip(lo, 0, size - 1)
        frac[lo >= size - 1] = 0.0
        return lo, np.minimum(lo + 1, size - 1), frac

    r0, r1, fr = taps(image.shape[0])
    c0, c1, fc = taps(image.shape[1])
    img = image.astype(np.float64)
    rows = img[r0] * (1 - fr)[:, None, None] + img[r1] * fr[:, None, None]
    out = rows[:, c0] * (1 - fc)[None, :, None] + rows[:, c1] * fc[None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _decode(path: Path) -> np.ndarray:
    """uint8 (H,W,3) RGB pixels; an alpha channel is dropped without compositing, as ``cv2.imread`` does."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def frost_textures(
    frost_dir: str | os.PathLike | None = None, *, table: str = "imagenet", base_url: str = FROST_BASE_URL
) -> list[np.ndarray]:
    """frost1 .. frost6 as read-only float32 (H,W,3) RGB arrays with values 0..255, cached in memory.

    ``table="cifar"`` gives the textures shrunk by 0.2 as make_cifar_c.py does (cached separately);
    ``"imagenet"`` gives them at full size. The folder is resolved by :func:`resolve_frost_dir`.
    """
    if table not in ("cifar", "imagenet"):
        raise UserError(f"unknown parameter table {table!r} for frost textures: use cifar or imagenet")
    folder = resolve_frost_dir(frost_dir, base_url=base_url)
    key = (str(folder.resolve()), table)
    if key not in _TEXTURES:
        textures = []
        for name in FROST_FILES:
            pixels = _decode(folder / name)
            if table == "cifar":
                pixels = _shrink_like_cv2(pixels, CIFAR_SHRINK)
            array = pixels.astype(np.float32)
            array.setflags(write=False)
            textures.append(array)
        _TEXTURES[key] = textures
    return _TEXTURES[key]
