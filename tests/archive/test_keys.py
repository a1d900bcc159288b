"""The key hierarchy: a wrong KEK is refused clearly and harms nothing; KEK from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from safepacs.archive import Archive
from safepacs.store import crypto
from tests.archive.objects import ct_bytes
from tests.archive_fixtures import dump_database
from tests.people import reader


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, but SQLite's shared-memory index and WAL, which any open creates."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(("-shm", "-wal"))
    }


def test_wrong_kek_is_refused_clearly_and_nothing_is_harmed(archive, archive_dir, database_url):
    arch, _ = archive
    stored = arch.ingest(ct_bytes(), source="t")
    before_bytes = arch.read_instance(stored.sop_instance_uid, principal=reader(arch))
    arch.close()
    kek_file = archive_dir / "keys" / "kek.key"
    good = kek_file.read_bytes()
    kek_file.unlink()
    crypto.write_kek_file(kek_file)  # another, valid key
    (archive_dir / "blobs" / ".tmp" / "left.part").write_bytes(b"x")  # recovery must not run
    snapshot = _snapshot(archive_dir), dump_database(database_url, archive_dir)
    with pytest.raises(crypto.CryptoError, match="wrong key-encryption key"):
        Archive.open(archive_dir, database_url=database_url)
    assert (_snapshot(archive_dir), dump_database(database_url, archive_dir)) == snapshot
    kek_file.write_bytes(good)
    again = Archive.open(archive_dir, database_url=database_url)
    try:
        assert again.read_instance(stored.sop_instance_uid, principal=reader(again)) == before_bytes
    finally:
        again.close()


def test_kek_from_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFEPACS_TEST_KEK", crypto.encode_kek(crypto.generate_key()))
    arch, _ = Archive.create(tmp_path / "a", kek="env:SAFEPACS_TEST_KEK")
    stored = arch.ingest(ct_bytes(), source="t")
    arch.close()
    assert not (tmp_path / "a" / "keys" / "kek.key").exists()
    again = Archive.open(tmp_path / "a")
    assert again.read_instance(stored.sop_instance_uid, principal=reader(again))
    again.close()
    monkeypatch.delenv("SAFEPACS_TEST_KEK")
    with pytest.raises(crypto.CryptoError, match="not set"):
        Archive.open(tmp_path / "a")


def test_site_and_study_keys_are_stored_only_wrapped(archive, archive_dir, database_url):
    arch, _ = archive
    arch.ingest(ct_bytes(), source="t")
    secret = arch._keys.secret  # the de-identification secret, unwrapped in memory only
    study_key = next(iter(arch._data_keys.values()))
    arch.close()
    stored = [*_snapshot(archive_dir).values(), dump_database(database_url, archive_dir)]
    for data in stored:
        assert secret not in data and study_key not in data


def test_an_archive_cannot_be_created_twice(archive, archive_dir, database_url):
    from safepacs.archive import ArchiveError

    with pytest.raises(ArchiveError, match="already"):
        Archive.create(archive_dir, database_url=database_url)
