"""Reads move "from last access" expiry; the read path only touches a dictionary, writes
are batched and at most one per study per hour."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import select, update

from safepacs.index.models import Instance, Series, Study
from safepacs.retention import lastaccess, shred
from safepacs.retention.models import StudyRetention
from tests.archive.objects import ct_bytes
from tests.people import reader


def _backdate(arch, study_uid: str, days: int) -> None:
    old = datetime.now() - timedelta(days=days)
    series = select(Series.pk).join(Study, Series.study_pk == Study.pk).where(Study.study_uid == study_uid)
    with arch._writer.begin() as conn:
        conn.execute(update(Instance).where(Instance.series_pk.in_(series)).values(created_at=old))


def _last_access(arch, study_uid: str) -> datetime | None:
    with arch._engine.connect() as conn:
        return conn.scalar(select(StudyRetention.last_access).where(StudyRetention.study_uid == study_uid))


def test_a_read_moves_the_expiry_of_a_last_access_policy(archive, archive_dir):
    arch, _ = archive
    stored = arch.ingest(ct_bytes(), source="test")
    (archive_dir / "retention.json").write_text(json.dumps(
        {"policies": [{"name": "idle", "match": {}, "keep_days": 7, "from": "last_access"}]}))
    _backdate(arch, stored.study_uid, 30)
    (entry,) = shred.current_plan(arch)
    assert entry.expired  # never read: 30 days idle

    arch.read_instance(stored.sop_instance_uid, principal=reader(arch))
    assert _last_access(arch, stored.study_uid) is None  # the read wrote nothing itself
    assert lastaccess.recorder(arch).flush() == 1

    (entry,) = shred.current_plan(arch)
    assert not entry.expired
    assert timedelta(days=6) < entry.due - datetime.now() < timedelta(days=8)


def test_reads_within_the_hour_are_written_once_and_later_ones_again(archive):
    arch, _ = archive
    stored = arch.ingest(ct_bytes(), source="test")
    t = [1000.0]
    times = iter([datetime(2026, 1, 1, 10, 5), datetime(2026, 1, 1, 11, 10)])
    rec = lastaccess.Recorder(arch._writer, clock=lambda: t[0], now=lambda: next(times), flush_s=3600)
    try:
        rec.touch(stored.study_uid)
        t[0] += 2700  # 45 minutes later: no new write
        rec.touch(stored.study_uid)
        assert rec.flush() == 1
        assert _last_access(arch, stored.study_uid) == datetime(2026, 1, 1, 10, 5)
        assert rec.flush() == 0
        t[0] += 1800  # 75 minutes after the first
        rec.touch(stored.study_uid)
        assert rec.flush() == 1
        assert _last_access(arch, stored.study_uid) == datetime(2026, 1, 1, 11, 10)
    finally:
        rec.close()


def test_a_destroyed_study_gets_no_row_back(archive, tmp_path):
    from safepacs.retention.certificate import Signer

    arch, _ = archive
    stored = arch.ingest(ct_bytes(), source="test")
    rec = lastaccess.recorder(arch)
    rec.touch(stored.study_uid)
    shred.destroy_study(arch, stored.study_uid, policy="test", signer=Signer(tmp_path / "s"))
    rec.touch(stored.study_uid)  # a late read that raced the destruction
    assert rec.flush() == 0
    with arch._engine.connect() as conn:
        assert conn.scalar(select(StudyRetention.study_uid)) is None


def test_close_writes_what_is_pending(tmp_path):
    from safepacs.archive import Archive

    arch, _ = Archive.create(tmp_path / "x")
    stored = arch.ingest(ct_bytes(), source="test")
    arch.read_instance(stored.sop_instance_uid, principal=reader(arch))
    arch.close()
    arch = Archive.open(tmp_path / "x")
    try:
        assert _last_access(arch, stored.study_uid) is not None
    finally:
        arch.close()
