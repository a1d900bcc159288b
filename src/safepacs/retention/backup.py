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

from sqlalchemy import MetaData, create_engine, insert, select

from safepacs.errors import SafepacsError
from safepacs.index import db
from safepacs.index.models import Base
from safepacs.store.blobs import LocalStore

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


def backup(archive: object, dest: Path) -> BackupReport:
    """Copy the index (minus keys) into ``dest/index.sqlite`` and every blob into
    ``dest/blobs``.  ``dest`` must not exist."""
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
        with source.connect() as src, target.begin() as dst:
            for table in Base.metadata.sorted_tables:
                if table.name in EXCLUDED_TABLES or table.name not in reflected.tables:
                    continue
                batch = [dict(r._mapping) for r in src.execute(select(table))]
                if batch:
                    dst.execute(insert(table), batch)
                rows += len(batch)
                tables += 1
    finally:
        target.dispose()
    store = archive._store  # type: ignore[attr-defined]
    out = LocalStore(dest / "blobs")
    count = size = 0
    for name in store.names():
        data = store.get(name)
        out.put(name, data)
        count += 1
        size += len(data)
    sealed = getattr(store, "sealed", None)  # sealed blobs (split store), if attached
    if sealed is not None:
        for name in sealed.names():
            data = sealed.get(name)
            out.put(name, data)
            count += 1
            size += len(data)
    (dest / MANIFEST).write_text(json.dumps({
        "kind": "safepacs-backup", "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "excluded_tables": list(EXCLUDED_TABLES), "tables": tables, "rows": rows, "blobs": count,
        "note": "holds no data keys: studies open only with keys still in the live index",
    }, indent=1) + "\n")
    return BackupReport(dest, tables, rows, count, size)
