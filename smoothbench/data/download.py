"""Fetch an archive with an MD5 check and unpack it safely (no path traversal, no links or devices)."""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from smoothbench.errors import UserError
from smoothbench.progress import Progress

CHUNK = 1 << 20


def md5_file(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """Hex MD5 of a file's bytes (the checksum the CIFAR site publishes)."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path, md5: str, progress: Progress | None = None) -> None:
    """Stream ``url`` (http(s):// or file://) to ``dest``, refusing it (and deleting it) unless its MD5 is ``md5``.

    ``progress`` is called with the number of bytes just read.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5()
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                digest.update(block)
                if progress is not None:
                    progress.advance(len(block), dest.name)
        if digest.hexdigest() != md5:
            raise UserError(
                f"download of {url} is corrupt (md5 {digest.hexdigest()}, expected {md5}); run the command again"
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"could not download {url} ({exc}); check the connection or copy the data by hand") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _checked_members(archive: tarfile.TarFile, source: Path) -> list[tarfile.TarInfo]:
    """All members, after refusing absolute paths, ``..`` parts, links and special files."""
    members = archive.getmembers()
    for member in members:
        parts = Path(member.name).parts
        if member.name.startswith(("/", "\\")) or ".." in parts or not (member.isfile() or member.isdir()):
            raise UserError(f"refusing to extract {source}: unsafe entry {member.name!r} (corrupt or malicious archive)")
    return members


def extract_tar(archive_path: Path, dest_dir: Path) -> None:
    """Unpack a (gzipped) tar into ``dest_dir``: checked first, unpacked into a temp folder, then moved.

    Files already in ``dest_dir`` with the same relative path are replaced; nothing else is touched.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=dest_dir) as tmp:
        try:
            with tarfile.open(archive_path) as archive:
                members = _checked_members(archive, archive_path)
                archive.extractall(tmp, members=members, filter="data")
        except tarfile.TarError as exc:
            raise UserError(f"{archive_path} is not a readable tar archive ({exc}); delete it and download again") from None
        for root, _dirs, files in os.walk(tmp):
            for name in files:
                src = Path(root) / name
                target = dest_dir / src.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, target)


def download_and_extract(
    url: str, dest_dir: str | os.PathLike, md5: str, progress: Progress | None = None
) -> None:
    """Download ``url`` into ``dest_dir`` (MD5-checked), unpack it there and delete the archive."""
    dest_dir = Path(dest_dir)
    archive = dest_dir / Path(urllib.parse.urlparse(url).path).name
    fetch(url, archive, md5, progress)
    try:
        extract_tar(archive, dest_dir)
    finally:
        archive.unlink(missing_ok=True)

