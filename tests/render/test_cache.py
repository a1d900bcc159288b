"""Rendered copies are cached only encrypted, per (instance, level, project), bounded, and
dropped when a grant is revoked."""

from __future__ import annotations

import os

import pytest

from safepacs.render.cache import RenderCache

KEY = bytes(range(32))
SECRET = b"MRN-PLAINTEXT-" * 40


def test_entries_on_disk_are_ciphertext_named_without_uids(tmp_path):
    cache = RenderCache(KEY, directory=tmp_path / "c")
    cache.put("2.25.42", "identified", None, SECRET, account=1)
    files = list((tmp_path / "c").iterdir())
    assert len(files) == 1
    blob = files[0].read_bytes()
    assert b"MRN-PLAINTEXT" not in blob and b"2.25.42" not in blob and "2.25.42" not in files[0].name
    assert oct(files[0].stat().st_mode)[-3:] == "600"
    assert cache.get("2.25.42", "identified") == SECRET


def test_keyed_by_instance_level_and_project():
    cache = RenderCache(KEY)
    cache.put("2.25.1", "pseudonymised", "P", b"for P")
    assert cache.get("2.25.1", "pseudonymised", "P") == b"for P"
    assert cache.get("2.25.1", "pseudonymised", "Q") is None
    assert cache.get("2.25.1", "identified", "P") is None
    assert cache.get("2.25.2", "pseudonymised", "P") is None


def test_revoking_a_project_or_an_account_drops_its_entries():
    cache = RenderCache(KEY)
    cache.put("a", "pseudonymised", "P", b"1", account=7)
    cache.put("b", "pseudonymised", "Q", b"2", account=8)
    cache.put("c", "identified", None, b"3", account=9)
    assert cache.get("c", "identified", account=7) == b"3"  # account 7 read it too
    assert cache.invalidate(project="P") == 1
    assert cache.get("a", "pseudonymised", "P") is None and cache.get("b", "pseudonymised", "Q") == b"2"
    assert cache.invalidate(account=7) == 1
    assert cache.get("c", "identified") is None
    assert cache.invalidate() == 1 and len(cache) == 0


def test_size_is_bounded_least_recently_used_first():
    cache = RenderCache(KEY, max_bytes=3000)
    for i in range(5):
        cache.put(str(i), "identified", None, os.urandom(900))
        cache.get("0", "identified")  # keep 0 warm
    assert cache.size <= 3000
    assert cache.get("0", "identified") is not None and cache.get("1", "identified") is None


def test_tampered_or_swapped_entries_are_not_served(tmp_path):
    cache = RenderCache(KEY, directory=tmp_path)
    cache.put("x", "identified", None, b"one")
    cache.put("y", "identified", None, b"two")
    fx, fy = (tmp_path / (cache._entries[(k, "identified", "")].name + ".rc") for k in ("x", "y"))
    fx.write_bytes(fy.read_bytes())  # another entry's ciphertext under x's name
    assert cache.get("x", "identified") is None
    assert cache.get("y", "identified") == b"two"


def test_reopening_empties_the_directory_and_keys_are_checked(tmp_path):
    RenderCache(KEY, directory=tmp_path).put("x", "identified", None, b"one")
    assert list(tmp_path.glob("*.rc"))
    RenderCache(KEY, directory=tmp_path)
    assert not list(tmp_path.glob("*.rc"))
    with pytest.raises(ValueError):
        RenderCache(b"short")
