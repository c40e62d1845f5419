"""atomic_write: the destination is the new file or untouched, and no temporary remains."""

import os
import stat
from pathlib import Path

import pytest

from jaxdiff._atomic import atomic_write, atomic_write_text


def _failing_write(exc):
    def write(tmp):
        Path(tmp).write_bytes(b"half of a file")
        raise exc

    return write


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failing_write_leaves_no_destination_and_no_temporary(tmp_path, exc):
    with pytest.raises(type(exc)):
        atomic_write(tmp_path / "out.bin", _failing_write(exc))
    assert os.listdir(tmp_path) == []


def test_failing_write_keeps_the_existing_file(tmp_path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(dest, _failing_write(RuntimeError("disk full")))
    assert os.listdir(tmp_path) == ["out.bin"] and dest.read_bytes() == b"old"


def test_success_replaces_the_existing_file_through_a_sibling(tmp_path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old contents, longer than the new ones")
    seen = []

    def write(tmp):
        seen.append(Path(tmp))
        Path(tmp).write_bytes(b"new")

    assert atomic_write(str(dest), write) == dest
    assert dest.read_bytes() == b"new" and os.listdir(tmp_path) == ["out.bin"]
    (tmp,) = seen
    assert tmp.parent == tmp_path and tmp.name.startswith(".out.bin.") and tmp.suffix == ".tmp"


@pytest.mark.parametrize("fsync", [False, True])
def test_fsync_flushes_the_written_temporary(tmp_path, monkeypatch, fsync):
    synced = []
    real_fsync = os.fsync

    def record(fd):
        synced.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    atomic_write(tmp_path / "out.bin", lambda tmp: Path(tmp).write_bytes(b"12345"), fsync=fsync)
    assert synced == ([5] if fsync else [])
    assert (tmp_path / "out.bin").read_bytes() == b"12345"


def test_new_file_mode_follows_the_umask_and_a_replaced_file_keeps_its_mode(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "new.txt", "a")
        plain = tmp_path / "plain.txt"
        plain.write_text("b")  # what open() gives under the same umask
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.txt").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(plain).st_mode) == 0o640
    os.chmod(plain, 0o604)
    atomic_write_text(plain, "c")
    assert stat.S_IMODE(os.stat(plain).st_mode) == 0o604 and plain.read_text() == "c"
