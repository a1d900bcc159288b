"""Read stored objects below the access-controlled read path (its authorisation is not
what these tests are about): blob from the archive's store, study key, AES-GCM open."""

from __future__ import annotations

import base64
from pathlib import Path

from sqlalchemy import select

from safepacs.index.models import DataKey, Instance, Series, SiteKey, Study
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


def remaining_keys(arch, data_dir: Path) -> list[bytes]:
    """Every key the live system still has: the KEK, the site keys, every study key."""
    kek = crypto.load_kek(arch.settings.kek, data_dir)
    text = (data_dir / "keys" / "kek.key").read_text().strip()
    keys = [base64.b64decode(text.split(":", 1)[1])]
    with arch._engine.connect() as conn:
        for uid, wrapped in conn.execute(select(DataKey.study_uid, DataKey.wrapped)):
            keys.append(kek.unwrap(wrapped, b"study:" + uid.encode()))
        for name, wrapped in conn.execute(select(SiteKey.name, SiteKey.wrapped)):
            keys.append(kek.unwrap(wrapped, b"site:" + name.encode()))
    assert all(len(k) == 32 for k in keys)
    return keys


def opens(keys: list[bytes], blob: bytes, contexts: list[bytes]) -> bool:
    for key in keys:
        for ctx in contexts:
            try:
                crypto.unseal(key, blob, ctx)
                return True
            except crypto.TamperedError:
                continue
    return False
