"""The demo set of a first run goes through the door like any object."""

from __future__ import annotations

from safepacs.archive import demo
from tests.people import reader


def test_demo_set_is_ingested_and_searchable(tmp_path):
    from safepacs.archive import Archive

    arch, _ = Archive.create(tmp_path / "a")
    try:
        n = demo.load(arch, count=8, seed=3)
        assert 0 < n <= 8 and arch.status()["instances"] == n
        assert arch.search("instance", {}, principal=reader(arch), include=["all"])
        assert not list((tmp_path / "a").rglob("*.dcm"))  # nothing plaintext left behind
    finally:
        arch.close()
