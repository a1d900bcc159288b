"""Sealed studies: ciphertext erasure-coded over n nodes, data key split among custodians.

Sealing a study moves its blobs (same names) to the vault's split store, splits its data key
k-of-m with Shamir's scheme, encrypts each share to one custodian and deletes the
KEK-wrapped key: from then on nobody (no administrator, no single node, no single
custodian) can open it alone.  Opening needs k distinct custodians, each proving their
passphrase; each approval and the opening are audit events.  The rebuilt key lives only in
this process's memory, for one study and a time window, then it is overwritten and dropped
(Python may still hold transient copies in freed memory: the window bounds exposure, it
does not erase RAM forensically).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, bindparam, delete, select
from sqlalchemy.orm import Session

from safepacs.audit import events as ev
from safepacs.audit.events import AuditEvent, AuditSink, LogSink
from safepacs.errors import SafepacsError
from safepacs.store import custodians as cust
from safepacs.store import shamir
from safepacs.store.blobs import BlobNotFound, BlobStore

#: the vault's settings in the data dir: {"k": 3, "nodes": [store URL, ...]}
SEALING_FILE = "sealing.json"
DEFAULT_WINDOW_S = 15 * 60
#: approvals older than this no longer count toward an opening
APPROVAL_TTL_S = 30 * 60


class Sealed(SafepacsError):
    """The study is sealed and no unseal window is open for it."""


#: what a caller entitled to know the study exists is told when it stays shut
SEALED_MESSAGE = "this study is sealed: it opens only with the custodians' approval"


def key_fingerprint(key: bytes) -> str:
    """A non-secret name of a data key (for certificates and checks)."""
    return hashlib.sha256(b"safepacs-key-fingerprint\x00" + key).hexdigest()[:32]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _models():  # imported late: safepacs.index.models imports our models at its end
    from safepacs.retention import models

    return models


class TieredStore:
    """The archive's store with the vault's split store behind it: reads fall through to
    the split store for blobs the primary store no longer holds; writes go to the primary."""

    def __init__(self, primary: BlobStore, sealed: BlobStore) -> None:
        self.primary, self.sealed = primary, sealed

    def put(self, name: str, data: bytes) -> None:
        self.primary.put(name, data)

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        self.primary.put_many(items)

    def get(self, name: str) -> bytes:
        try:
            return self.primary.get(name)
        except BlobNotFound:
            return self.sealed.get(name)

    def delete(self, name: str) -> None:
        self.primary.delete(name)
        self.sealed.delete(name)

    def names(self) -> Iterator[str]:
        return self.primary.names()  # crash recovery must never see (and delete) sealed blobs

    def clean_temp(self) -> int:
        return self.primary.clean_temp()

    def usage(self) -> int:
        return self.primary.usage() + self.sealed.usage()

    def healthy(self) -> bool:
        return self.primary.healthy() and self.sealed.healthy()


@dataclass
class _Window:
    key: bytearray
    until: float


class Vault:
    """Custodians, sealing, and unseal windows over one index database and split store."""

    def __init__(
        self,
        engine: Engine,
        store: BlobStore,
        *,
        audit: AuditSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        window_s: float = DEFAULT_WINDOW_S,
    ) -> None:
        self._engine = engine
        self.store = store
        self._audit = audit or LogSink()
        self._clock = clock
        self._window_s = window_s
        self._lock = threading.Lock()
        self._approvals: dict[str, dict[str, tuple[bytes, float]]] = {}  # study -> custodian -> (share, when)
        self._windows: dict[str, _Window] = {}

    # --- custodians -------------------------------------------------------------------
    def add_custodian(self, name: str, passphrase: str, *, by: str = "") -> None:
        if not name or len(name) > 64 or not name.isprintable():
            raise SafepacsError("custodian name must be 1..64 printable characters")
        keys = cust.new_keys(passphrase)
        m = _models()
        with Session(self._engine) as session, session.begin():
            if session.get(m.Custodian, name) is not None:
                raise SafepacsError("a custodian of that name exists")
            session.add(m.Custodian(name=name, public_key=keys.public_key, protected_private=keys.protected_private, created_at=_now()))
        self._event(ev.SECURITY_ALERT, ev.CREATE, user=by, route="sealing:add-custodian", detail={"custodian": name})

    def custodian_names(self) -> list[str]:
        m = _models()
        with Session(self._engine) as session:
            return list(session.scalars(select(m.Custodian.name).where(m.Custodian.retired_at.is_(None)).order_by(m.Custodian.name)))

    def is_sealed(self, study_uid: str) -> bool:
        with Session(self._engine) as session:
            return session.get(_models().SealedStudy, study_uid) is not None

    # --- sealing ----------------------------------------------------------------------
    def seal_study(self, archive: object, study_uid: str, custodians: Sequence[str], k: int, *, by: str = "") -> int:
        """Seal one study of ``archive`` (an open :class:`safepacs.archive.Archive`):
        returns the number of blobs moved.  Order: copy blobs to the split store and read
        them back; then in one transaction write the shares and delete the wrapped key;
        only then delete the primary copies (a crash in between leaves a readable study)."""
        from safepacs.index.models import DataKey, Instance, Series, Study

        m = _models()
        names = list(dict.fromkeys(custodians))
        if len(names) != len(custodians) or not (2 <= k <= len(names)):
            raise SafepacsError("sealing needs 2 <= k <= number of distinct custodians")
        engine = archive._engine  # type: ignore[attr-defined]
        with Session(engine) as session:
            rows = {c.name: c for c in session.scalars(select(m.Custodian).where(m.Custodian.name.in_(names)))}
            if set(rows) != set(names) or any(r.retired_at is not None for r in rows.values()):
                raise SafepacsError("unknown or retired custodian")
            blobs = [
                n for pair in session.execute(
                    select(Instance.object_blob, Instance.delta_blob)
                    .join(Series, Instance.series_pk == Series.pk)
                    .join(Study, Series.study_pk == Study.pk)
                    .where(Study.study_uid == study_uid)
                ) for n in pair
            ]
        if not blobs:
            raise SafepacsError("no such study")
        if self.is_sealed(study_uid):
            raise SafepacsError("study is already sealed")
        key = archive._data_key(study_uid)  # type: ignore[attr-defined]
        primary = archive._store  # type: ignore[attr-defined]
        primary = primary.primary if isinstance(primary, TieredStore) else primary
        for name in blobs:
            data = bytes(primary.get(name))
            self.store.put(name, data)
            if bytes(self.store.get(name)) != data:
                raise SafepacsError("split store did not return a sealed blob bit for bit")
        shares = shamir.split(key, k, len(names))
        context = b"study:" + study_uid.encode()
        with Session(engine) as session, session.begin():
            session.add(m.SealedStudy(study_uid=study_uid, k=k, m=len(names), key_fingerprint=key_fingerprint(key), sealed_at=_now()))
            for name, share in zip(names, shares, strict=True):
                env = cust.encrypt_share(rows[name].public_key, share.to_bytes(), context)
                session.add(m.SealedShare(study_uid=study_uid, custodian=name, x=share.x, envelope=env))
            session.execute(delete(DataKey).where(DataKey.study_uid == study_uid))
        archive._forget_key(study_uid)  # type: ignore[attr-defined]
        for name in blobs:
            primary.delete(name)
        self._event(ev.SECURITY_ALERT, ev.UPDATE, user=by, route="sealing:seal", study_uid=study_uid,
                    detail={"k": k, "m": len(names), "blobs": len(blobs)})
        return len(blobs)

    def seal_patient(self, archive: object, pseudonym: str, custodians: Sequence[str], k: int, *, by: str = "") -> list[str]:
        """Seal every study of one patient (a VIP): returns the studies sealed now."""
        from safepacs.index.models import Patient, Study

        with Session(archive._engine) as session:  # type: ignore[attr-defined]
            uids = list(session.scalars(select(Study.study_uid).join(Patient, Study.patient_pk == Patient.pk)
                                        .where(Patient.patient_id == pseudonym).order_by(Study.pk)))
        done = []
        for uid in uids:
            if not self.is_sealed(uid):
                self.seal_study(archive, uid, custodians, k, by=by)
                done.append(uid)
        return done

    # --- opening ----------------------------------------------------------------------
    def approve(self, study_uid: str, custodian: str, passphrase: str, *, purpose: str = "", address: str = "") -> int:
        """One custodian's approval to open ``study_uid``, authenticated by passphrase;
        returns approvals now held.  At k the key is rebuilt and a window opens."""
        m = _models()
        with Session(self._engine) as session:
            sealed = session.get(m.SealedStudy, study_uid)
            row = session.get(m.Custodian, custodian)
            share = session.scalar(select(m.SealedShare).where(m.SealedShare.study_uid == study_uid, m.SealedShare.custodian == custodian))
        if sealed is None or row is None or share is None or row.retired_at is not None:
            self._event(ev.USER_AUTHENTICATION, ev.EXECUTE, outcome=ev.MINOR_FAILURE, user=custodian, address=address,
                        route="sealing:approve", study_uid=study_uid, reason="not a custodian of this sealed study")
            raise Sealed("not a custodian of this sealed study")
        try:
            private = cust.unlock(cust.CustodianKeys(row.public_key, row.protected_private), passphrase)
            raw = cust.decrypt_share(private, share.envelope, b"study:" + study_uid.encode())
        except cust.CustodianError as exc:
            self._event(ev.USER_AUTHENTICATION, ev.EXECUTE, outcome=ev.MINOR_FAILURE, user=custodian, address=address,
                        route="sealing:approve", study_uid=study_uid, reason=str(exc))
            raise
        now = self._clock()
        with self._lock:
            held = self._approvals.setdefault(study_uid, {})
            for name in [n for n, (_, t) in held.items() if now - t > APPROVAL_TTL_S]:
                del held[name]
            held[custodian] = (raw, now)
            count = len(held)
        self._event(ev.USER_AUTHENTICATION, ev.EXECUTE, user=custodian, address=address, route="sealing:approve",
                    study_uid=study_uid, purpose=purpose, detail={"approvals": count, "needed": sealed.k})
        if count >= sealed.k:
            self._open(study_uid, sealed.k, sealed.key_fingerprint, purpose)
        return count

    def _open(self, study_uid: str, k: int, fingerprint: str, purpose: str) -> None:
        with self._lock:
            held = self._approvals.pop(study_uid, {})
        shares = [shamir.Share.from_bytes(raw) for raw, _ in held.values()]
        key = bytearray(shamir.combine(shares, k))
        if key_fingerprint(bytes(key)) != fingerprint:
            self._event(ev.SECURITY_ALERT, ev.EXECUTE, outcome=ev.SERIOUS_FAILURE, route="sealing:open",
                        study_uid=study_uid, reason="custodian shares do not rebuild the sealed key")
            raise Sealed("custodian shares do not rebuild the sealed key")
        with self._lock:
            self._windows[study_uid] = _Window(key, self._clock() + self._window_s)
        self._event(ev.SECURITY_ALERT, ev.EXECUTE, route="sealing:open", study_uid=study_uid, purpose=purpose,
                    detail={"custodians": ",".join(sorted(held)), "window_s": int(self._window_s)})

    def key(self, study_uid: str) -> bytes:
        """The key of an open window; raises :class:`Sealed` otherwise (closing an expired one)."""
        with self._lock:
            window = self._windows.get(study_uid)
            if window is not None and self._clock() < window.until:
                return bytes(window.key)
        if window is not None:
            self.close(study_uid)
        raise Sealed("the study is sealed: it opens only with the approval of enough custodians")

    def close(self, study_uid: str) -> None:
        """End the window now and overwrite the key."""
        with self._lock:
            window = self._windows.pop(study_uid, None)
            self._approvals.pop(study_uid, None)
        if window is not None:
            window.key[:] = bytes(len(window.key))
            self._event(ev.SECURITY_ALERT, ev.EXECUTE, route="sealing:close", study_uid=study_uid)

    def close_all(self) -> None:
        for uid in list(self._windows):
            self.close(uid)

    def _event(self, event_id: str, action: str, **fields: object) -> None:
        self._audit.record(AuditEvent(event_id, action, **fields))  # type: ignore[arg-type]


_SQL_SEALED = None  # built on first use (the models import late)


def data_key_hook(engine: Engine, vault: Vault | None, study_uid: str) -> bytes | None:
    """For ``Archive._data_key``: None when the study is not sealed, else the key of an
    open window, else :class:`Sealed` (fail closed: never a fresh key for a sealed study)."""
    global _SQL_SEALED
    if _SQL_SEALED is None:
        table = _models().SealedStudy.__table__
        _SQL_SEALED = select(table.c.k).where(table.c.study_uid == bindparam("b_uid"))
    with engine.connect() as conn:
        if conn.scalar(_SQL_SEALED, {"b_uid": study_uid}) is None:
            return None
    if vault is None:
        raise Sealed("the study is sealed: it opens only with the approval of enough custodians")
    return vault.key(study_uid)


def attach_from_data_dir(archive: object, data_dir: Path, *, audit: AuditSink | None = None) -> Vault | None:
    """Attach the vault configured in ``DATA_DIR/sealing.json`` to ``archive`` (an open
    :class:`safepacs.archive.Archive`) and return it; None when the file does not exist.
    A malformed file raises :class:`SafepacsError` (fail closed: serving without the vault
    would answer "not found" for sealed studies that exist)."""
    from safepacs.store.split import open_split, split_url

    path = Path(data_dir) / SEALING_FILE
    if not path.exists():
        return None
    try:
        conf = json.loads(path.read_text("utf-8"))
        store = open_split(split_url(int(conf["k"]), [str(n) for n in conf["nodes"]]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SafepacsError(f"{SEALING_FILE}: malformed sealing settings ({exc.__class__.__name__})") from None
    vault = Vault(archive._engine, store, audit=audit)  # type: ignore[attr-defined]
    archive.attach_vault(vault)  # type: ignore[attr-defined]
    return vault
