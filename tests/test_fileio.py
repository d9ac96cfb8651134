"""Writing files: atomic replacement (also on a full disk), permissions, and checks before the work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from smoothbench.errors import UserError
from smoothbench.fileio import atomic_open, check_writable_file, check_writable_folder


def test_atomic_files_get_the_usual_permissions(tmp_path):
    with atomic_open(tmp_path / "a.txt") as handle:
        handle.write("x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_checks_refuse_files_used_as_folders_and_folders_used_as_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"notes\.txt is a file, not a folder, so .*notes\.txt/out\.csv cannot be written"):
        check_writable_file(tmp_path / "notes.txt" / "out.csv")
    with pytest.raises(UserError, match="is a folder; give a file name"):
        check_writable_file(tmp_path)
    with pytest.raises(UserError, match=r"notes\.txt is a file, not a folder"):
        check_writable_folder(tmp_path / "notes.txt")
    check_writable_file(tmp_path / "new" / "deeper" / "out.csv")  # folders to be made are fine
    assert not (tmp_path / "new").exists()  # and checking made nothing


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="no /sys on this machine")
def test_checks_probe_the_folder_really(tmp_path):
    """Permission bits do not tell (root may write anywhere but /sys); the check creates and deletes a file."""
    with pytest.raises(UserError, match=r"cannot write /sys/out\.csv: /sys is not writable"):
        check_writable_file("/sys/out.csv")


def test_a_full_disk_keeps_the_previous_file_and_says_so(small_disk):
    path = small_disk / "results.csv"
    with atomic_open(path) as handle:
        handle.write("old complete file\n")
    with pytest.raises(UserError, match=r"the disk is full: .*results\.csv was not written \(the previous file is kept\)"):
        with atomic_open(path) as handle:
            handle.write("x" * 200_000)
    assert path.read_text() == "old complete file\n"
    assert sorted(p.name for p in small_disk.iterdir()) == ["results.csv"]  # the partial temporary is gone
