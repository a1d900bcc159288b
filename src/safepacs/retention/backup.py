"""Backups that can never resurrect a destroyed study: they hold no data keys.

Design (chosen over rewriting backups' key files at each destruction, which needs every
backup to stay writable and reachable): a backup is the index WITHOUT the ``data_keys`` and
``sealed_shares`` tables, plus the ciphertext blobs as they are.  Study keys live only in
the live index (replicate that database for availability: that replica is the online key
escrow, and destruction deletes from it like from any live table).  Restoring a backup
therefore opens exactly the studies whose keys still exist live; a study destroyed after
the backup was taken stays ciphertext forever.  Site keys (KEK-wrapped) are kept so
pseudonyms stay stable; after a KEK rotation they are re-wrapped from the live index on
restore.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, MetaData, create_engine, insert, select

from safepacs.errors import SafepacsError
from safepacs.index import db
from safepacs.index.models import Base, Instance
from safepacs.store.blobs import BlobNotFound, LocalStore

#: never copied into a backup
EXCLUDED_TABLES = ("data_keys", "sealed_shares")
MANIFEST = "backup.json"


class BackupError(SafepacsError):
    """The backup folder exists or the copy failed."""


@dataclass(frozen=True)
class BackupReport:
    folder: Path
    tables: int
    rows: int
    blobs: int
    bytes: int
    #: blobs the index names that the store no longer has (damage, or a study destroyed
    #: while the backup ran): listed in the manifest, not a reason to give up the backup
    missing: int = 0


#: rows copied per insert: a table is never held whole in memory
_ROWS = 5000


def _snapshot(conn: Connection) -> Connection:
    """``conn`` reading one consistent state of every table while the archive runs on: a
    study stored or destroyed meanwhile is in the backup whole or not at all."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")  # WAL: one read transaction sees one snapshot
        return conn
    return conn.execution_options(isolation_level="REPEATABLE READ")


def backup(archive: object, dest: Path) -> BackupReport:
    """Copy the index (minus keys) into ``dest/index.sqlite`` and every blob it names into
    ``dest/blobs``, from one snapshot of the index.  ``dest`` must not exist."""
    dest = Path(dest)
    if dest.exists():
        raise BackupError(f"{dest}: already exists (a backup never overwrites)")
    dest.mkdir(parents=True, mode=0o700)
    source = archive._engine  # type: ignore[attr-defined]
    target = create_engine(f"sqlite:///{dest / 'index.sqlite'}")
    rows = tables = 0
    try:
        db.upgrade(target)
        reflected = MetaData()
        reflected.reflect(source)
        with source.connect() as live, target.begin() as dst:
            src = _snapshot(live)
            for table in Base.metadata.sorted_tables:
                if table.name in EXCLUDED_TABLES or table.name not in reflected.tables:
                    continue
                for part in src.execute(select(table)).mappings().partitions(_ROWS):
                    dst.execute(insert(table), [dict(r) for r in part])
                    rows += len(part)
                tables += 1
            names = sorted({n for pair in src.execute(select(Instance.object_blob, Instance.delta_blob))
                            for n in pair})
    finally:
        target.dispose()
    # the blobs the snapshot names, wherever they are now (a sealed study's on its split
    # nodes): not the store's listing, which also holds uncommitted and orphan blobs
    store = archive._store  # type: ignore[attr-defined]
    out = LocalStore(dest / "blobs")
    count = size = missing = 0
    for name in names:
        try:
            data = store.get(name)
        except BlobNotFound:
            missing += 1
            continue
        out.put(name, data)
        count += 1
        size += len(data)
    (dest / MANIFEST).write_text(json.dumps({
        "kind": "safepacs-backup", "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "excluded_tables": list(EXCLUDED_TABLES), "tables": tables, "rows": rows, "blobs": count,
        "missing_blobs": missing,
        "note": "holds no data keys: studies open only with keys still in the live index",
    }, indent=1) + "\n")
    return BackupReport(dest, tables, rows, count, size, missing)
