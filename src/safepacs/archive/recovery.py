"""Crash recovery, run when an archive is opened.

Ingest writes blobs (under fresh random names, fsync, fsync folder) BEFORE it commits the
index rows that name them, and answers the sender only after the commit.  So after a crash
at any point the store can hold blobs no row names, whole or partly written (the crash came
before the commit), and temp files of older versions; none was acknowledged, all are
ciphertext, and all are removed here.  A row whose blob is missing cannot arise from
a crash under this order; it is counted and reported as damage, never silently dropped.
Only names the archive makes (:data:`~safepacs.store.blobs.OWN_NAME`) are ever deleted: a
file of another shape in a blob folder is not the archive's, so it is counted as foreign and
left where it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from safepacs.index.models import DataKey, Instance, Study
from safepacs.store.blobs import OWN_NAME, BlobStore, StoreError

log = logging.getLogger("safepacs.archive")


@dataclass(frozen=True)
class RecoveryReport:
    temp_removed: int
    orphans_removed: int
    missing_blobs: int
    unused_keys_removed: int
    #: unreferenced files that the archive did not name: left in place
    foreign_left: int = 0
    #: orphans the store would not delete (a permission, a node down): tried again next open
    orphans_left: int = 0


def recover(engine: Engine, store: BlobStore) -> RecoveryReport:
    """Remove temp files, orphan blobs and data keys of studies that were never stored."""
    temp = store.clean_temp()
    with Session(engine) as session:
        referenced: set[str] = set()
        for obj, dlt in session.execute(select(Instance.object_blob, Instance.delta_blob)):
            referenced.add(obj)
            referenced.add(dlt)
    present = set(store.names())
    unreferenced = present - referenced
    orphans = {name for name in unreferenced if OWN_NAME.fullmatch(name)}
    left = 0
    for name in sorted(orphans):
        try:
            store.delete(name)
        except StoreError:
            left += 1  # ciphertext no row names: harmless where it is, so the archive still opens
    if left:
        log.warning("crash recovery: %d orphan blobs could not be deleted", left)
    with Session(engine) as session, session.begin():
        unused = session.execute(
            delete(DataKey).where(DataKey.study_uid.not_in(select(Study.study_uid)))
        ).rowcount
    return RecoveryReport(temp, len(orphans) - left, len(referenced - present), unused or 0,
                          len(unreferenced - orphans), left)
