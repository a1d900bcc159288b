"""Backups on both index databases: one snapshot of the index, the blobs it names."""

from __future__ import annotations

import json
import sqlite3

from safepacs.retention.backup import backup
from tests.archive.objects import ct_bytes


def test_a_backup_holds_the_index_rows_and_blobs_of_what_is_stored(archive, tmp_path):
    """On SQLite and on PostgreSQL (its REPEATABLE READ snapshot): every stored instance's
    row, its two blobs, and none of the data keys."""
    arch, _ = archive
    stored = [arch.ingest(ct_bytes(f"1.2.826.0.1.3680043.99.7.{n}", pixel=n), source="t") for n in (1, 2)]
    report = backup(arch, tmp_path / "bk")
    assert (report.blobs, report.missing) == (4, 0)
    with sqlite3.connect(tmp_path / "bk" / "index.sqlite") as db:
        sops = {r[0] for r in db.execute("SELECT sop_uid FROM instances")}
        assert sops == {s.sop_instance_uid for s in stored}
        assert db.execute("SELECT count(*) FROM data_keys").fetchone() == (0,)
    manifest = json.loads((tmp_path / "bk" / "backup.json").read_text())
    assert manifest["blobs"] == 4 and manifest["missing_blobs"] == 0 and manifest["rows"] == report.rows
