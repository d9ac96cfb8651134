"""Short content fingerprints of data sources, stored in every result row (``data_fingerprint``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

FINGERPRINT_CHARS = 16


def _header(digest: Any, *parts: str) -> None:
    """Feed length-prefixed strings, so that field boundaries are unambiguous."""
    for part in parts:
        raw = part.encode()
        digest.update(len(raw).to_bytes(8, "little") + raw)


def array_fingerprint(name: str, split: str, images: np.ndarray, labels: np.ndarray) -> str:
    """First 16 hex chars of SHA-256 over (name, split, image shape, labels as int64 LE, image bytes).

    ``images`` is hashed in its C-order byte layout (smoothbench's resident layout is uint8 [N,3,H,W]).
    SHA-256 runs at several hundred MB/s, so CIFAR's 150 MB take well under a second.
    """
    digest = hashlib.sha256()
    _header(digest, name, split, "x".join(map(str, images.shape)), str(images.dtype))
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    digest.update(memoryview(np.ascontiguousarray(images)).cast("B"))
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def files_fingerprint(name: str, split: str, root: str | os.PathLike, paths: Iterable[str | os.PathLike]) -> str:
    """First 16 hex chars of SHA-256 over (name, split, sorted relative paths with their byte sizes).

    Sizes, not contents, keep it cheap for 1.3 M ImageNet files; a re-encoded or replaced file almost
    always changes size.
    """
    root = Path(root)
    entries = sorted((Path(p).relative_to(root).as_posix(), os.path.getsize(p)) for p in paths)
    digest = hashlib.sha256()
    _header(digest, name, split)
    for rel, size in entries:
        _header(digest, rel, str(size))
    return digest.hexdigest()[:FINGERPRINT_CHARS]
