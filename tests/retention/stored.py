"""Read stored objects below the access-controlled read path (its authorisation is not
what these tests are about): blob from the archive's store, study key, AES-GCM open."""

from __future__ import annotations

from sqlalchemy import select

from safepacs.index.models import Instance, Series, Study
from safepacs.store import crypto


def blobs_of(arch, study_uid: str) -> list[tuple[str, str, str]]:
    """(sop_uid, object blob, delta blob) of every instance of a study."""
    with arch._engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(Instance.sop_uid, Instance.object_blob, Instance.delta_blob)
            .join(Series, Instance.series_pk == Series.pk)
            .join(Study, Series.study_pk == Study.pk)
            .where(Study.study_uid == study_uid)
            .order_by(Instance.pk)
        )]


def read_plain(arch, study_uid: str, sop_uid: str) -> bytes:
    """The de-identified Part 10 bytes of one instance (raises Sealed, NotFound, ...)."""
    (obj,) = [o for s, o, _ in blobs_of(arch, study_uid) if s == sop_uid]
    blob = arch._store.get(obj)
    key = arch._data_key(study_uid)
    return crypto.unseal(key, blob, b"object\x00" + sop_uid.encode())
