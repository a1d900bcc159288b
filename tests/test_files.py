"""New files are never written through a link planted at their name; their disk is taken
before they are written."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from safepacs import files
from safepacs.files import open_new


@pytest.mark.parametrize("planted", ["link", "stale file"])
def test_a_name_already_taken_is_replaced_not_written_through(tmp_path, planted):
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's\n")
    name = tmp_path / "out" / ".x.dcm.123.part"
    name.parent.mkdir()
    if planted == "link":
        name.symlink_to(victim)
    else:
        name.write_text("left by a killed run\n")
    with open_new(name, "w") as fh:
        fh.write("ours\n")
    assert victim.read_text() == "someone else's\n"
    assert not name.is_symlink() and name.read_text() == "ours\n"


def test_missing_folders_are_made_unless_told_not_to(tmp_path):
    with open_new(tmp_path / "a" / "b" / "c.bin") as fh:
        fh.write(b"x")
    assert (tmp_path / "a" / "b" / "c.bin").read_bytes() == b"x"
    with pytest.raises(FileNotFoundError):
        open_new(tmp_path / "d" / "e.txt", "w", make_parents=False)


def test_reserve_allocates_the_whole_file_before_it_is_written(tmp_path):
    path = tmp_path / "new.bin"
    with open_new(path) as fh:
        files.reserve(fh.fileno(), 3 << 20)
        st = os.fstat(fh.fileno())
        assert st.st_size == 3 << 20 and st.st_blocks * 512 >= 3 << 20
        fh.write(b"head")
    assert path.read_bytes()[:4] == b"head" and path.stat().st_size == 3 << 20


def _failing(err: int):  # type: ignore[no-untyped-def]
    calls = []

    def call(fd: int, mode: int, offset: int, length: int) -> int:
        calls.append(length)
        ctypes.set_errno(err)
        return -1

    return call, calls


def test_a_disk_too_full_for_the_file_is_an_error_before_any_byte(tmp_path, monkeypatch):
    call, _ = _failing(errno.ENOSPC)
    monkeypatch.setattr(files, "_fallocate", call)
    with open_new(tmp_path / "x.bin") as fh, pytest.raises(OSError) as raised:
        files.reserve(fh.fileno(), 1 << 20)
    assert raised.value.errno == errno.ENOSPC and "No space" in str(raised.value)


def test_a_filesystem_that_cannot_preallocate_is_written_plainly_and_not_asked_again(
    tmp_path, monkeypatch
):
    call, calls = _failing(errno.EOPNOTSUPP)
    monkeypatch.setattr(files, "_fallocate", call)
    for name in ("a.bin", "b.bin"):
        with open_new(tmp_path / name) as fh:
            files.reserve(fh.fileno(), 4096)  # no error
            fh.write(b"x")
    assert calls == [4096] and files._fallocate is None
    assert (tmp_path / "b.bin").read_bytes() == b"x"
