"""New files are never written through a link planted at their name."""

from __future__ import annotations

import pytest

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
