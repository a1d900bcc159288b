"""KEK rotation: every remaining key re-wrapped, the old KEK useless, crashes settled."""

from __future__ import annotations

import fcntl
import os

from safepacs.index import db
from safepacs.index.models import SiteKey
from safepacs.retention import kek
from safepacs.store import crypto
from tests.archive.objects import ct_bytes
from tests.retention.stored import read_plain


def test_rotation_rewraps_every_key_and_old_kek_opens_nothing(archive, archive_dir):
    arch, _ = archive
    s = arch.ingest(ct_bytes(), source="test")
    before = read_plain(arch, s.study_uid, s.sop_instance_uid)
    old = crypto.read_kek_file(archive_dir / "keys" / "kek.key")
    result = kek.rotate(arch)
    # one study key; two site keys; the access, render and audit-signing secrets
    assert result.rotated and result.keys_rewrapped == 6
    new = crypto.read_kek_file(archive_dir / "keys" / "kek.key")
    assert new.key_id == result.new_id != old.key_id
    assert (os.stat(archive_dir / "keys" / "kek.key").st_mode & 0o777) == 0o600
    arch._forget_key(s.study_uid)
    assert read_plain(arch, s.study_uid, s.sop_instance_uid) == before
    with arch._engine.connect() as conn:
        for name, wrapped in conn.execute(SiteKey.__table__.select().with_only_columns(SiteKey.name, SiteKey.wrapped)):
            try:
                old.unwrap(wrapped, b"site:" + name.encode())
                raise AssertionError("the old KEK still opens a site key")
            except crypto.CryptoError:
                pass


def test_rotation_is_deferred_while_another_process_has_the_archive_open(archive, archive_dir):
    arch, _ = archive
    other = os.open(archive_dir / "archive.lock", os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_SH)  # as a second Archive.open would
        result = kek.rotate(arch)
        assert not result.rotated and "other processes" in result.reason
    finally:
        os.close(other)
    assert kek.rotate(arch).rotated


def test_interrupted_rotation_is_settled_before_opening(archive, archive_dir, database_url):
    arch, _ = archive
    settings = arch.settings
    nxt = archive_dir / "keys" / "kek.key.next"
    # crash before the commit: the .next file is discarded
    crypto.write_kek_file(nxt)
    engine = db.make_engine(settings.database_url)
    assert kek.finish_rotation(settings.data_dir, settings.kek, engine) == "discarded"
    assert not nxt.exists()
    # crash after the commit, before the rename: the .next file becomes the KEK
    kek.rotate(arch)
    current = (archive_dir / "keys" / "kek.key").read_bytes()
    os.rename(archive_dir / "keys" / "kek.key", nxt)
    crypto.write_kek_file(archive_dir / "keys" / "kek.key")  # stands for the old key file
    assert kek.finish_rotation(settings.data_dir, settings.kek, engine) == "completed"
    assert (archive_dir / "keys" / "kek.key").read_bytes() == current
    engine.dispose()
