"""Writing files safely: atomic replacement, exclusive locks, and checks that a path can be written.

A file is written to a temporary sibling and renamed over the target, so a reader (or a rerun after a
crash, a full disk or Ctrl-C) sees either the old complete file or the new complete file, never a partial
one. Files get the usual permissions (``0666`` less the umask), like any other file the user makes.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from smoothbench.errors import UserError


#: errno → what it means for a file being written: no room for it.
_FULL = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
         errno.EFBIG: "the file is larger than this system allows"}


def _file_mode() -> int:
    """``0o666`` less the process umask (read without changing it for good)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on clean exit it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno in _FULL:
            kept = " (the previous file is kept)" if path.exists() else ""
            raise UserError(f"{_FULL[err.errno]}: {path} was not written{kept}; free some space (or write "
                            "elsewhere) and run again") from None
        raise


def atomic_torch_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_open`."""
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


@contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock for ``path`` (``flock`` on the sidecar ``.<name>.lock``, which stays behind).

    Writers that read, merge and replace a file hold it across all three steps, so none of them works from
    a version another has already replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_writable_folder(path: str | os.PathLike, *, target: str | os.PathLike | None = None) -> None:
    """Before any work: ``path`` is, or can be made, a folder this process may write into (``target``, the
    file to be written there, only names it in the message)."""
    path = Path(path)
    shown = Path(target) if target is not None else path
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise UserError(f"{existing} is a file, not a folder, so {shown} cannot be written; give another path")
    try:  # a real probe: permission bits do not tell for root, read-only mounts or special file systems
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UserError(f"cannot write {shown}: {existing} is not writable ({err.strerror}); give a writable "
                        "place") from None


def check_writable_file(path: str | os.PathLike) -> None:
    """Before any work: ``path`` names a file (not a folder) that this process may create or replace."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name")
    check_writable_folder(path.parent, target=path)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
