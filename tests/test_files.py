"""``files.atomic_write``: the target changes only when the whole write succeeded."""
import os
import stat

import pytest

from minigrad.files import atomic_write


def test_atomic_write_replaces_the_file_with_usual_permissions(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with atomic_write(str(target), mode="w") as file:
        file.write("new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["out.json"]


def test_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_write(str(target)) as file:
            file.write(b"half of the new")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_creates_the_directory(tmp_path):
    target = tmp_path / "new" / "dir" / "file.bin"
    with atomic_write(str(target)) as file:
        file.write(b"x")
    assert target.read_bytes() == b"x"
