"""The archive service: the one API the DICOMweb server, the DIMSE SCP and the CLI call.

Ingest order (the crash-safety argument, see README "Archive"):

1. parse and check the object in memory, de-identify it (``door``), serialise it;
2. seal the object and its identity delta with the study's data key (two blobs);
3. write both blobs durably (``BlobStore.put`` returns only when they are on disk);
4. commit all index rows in ONE transaction;
5. return: only now is the sender told the object is stored.

A crash before 4 leaves blobs no row names (removed at the next open); after 4 the object
is whole.  All UIDs in and out are de-identified UIDs.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import io
import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import blake3
from pydicom import Dataset
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from safepacs.access.principal import Decision, Principal
from safepacs.access.profile import PatientFamilies
from safepacs.access.service import AccessControl
from safepacs.archive import door
from safepacs.archive.attributes import index_values
from safepacs.archive.errors import ArchiveError, Conflict, IntegrityError, NotAcceptable, NotFound
from safepacs.archive.identity import IdentityIndex, OriginalIdentity
from safepacs.archive.masking import DisplayRequest, Masking
from safepacs.archive.recovery import RecoveryReport, recover
from safepacs.archive.sameness import same_object
from safepacs.audit.events import AuditSink
from safepacs.config import SETTINGS_FILE, Settings
from safepacs.deid.delta import IdentityDelta
from safepacs.deid.keys import Keys
from safepacs.deid.mislabelled import read_as_written
from safepacs.deid.options import Options
from safepacs.dicom import memio
from safepacs.dicom.image import PIXEL_TAGS
from safepacs.dicom.panics import panics_as_errors
from safepacs.errors import InvalidDicom
from safepacs.index import db, query
from safepacs.index.models import (
    DataKey,
    Identity,
    Instance,
    Patient,
    Series,
    SiteKey,
    Study,
)
from safepacs.retention import lastaccess
from safepacs.store import crypto, service_keys
from safepacs.store.blobs import BlobNotFound, BlobStore, S3Store, new_names, open_store

log = logging.getLogger("safepacs.archive")
_DEID_KEY, _INDEX_KEY = "deid", "index"
#: what a folder may already hold when it becomes an archive: a volume's lost+found, and what
#: an operator prepares for it (the KEK under keys/, site retention rules)
PREPARED = frozenset({"lost+found", "keys", "retention.json"})
#: ISO 2022 escape sequences pydicom leaves in decoded text (ESC, intermediates, final)
_ESCAPES = re.compile("\x1b[\x20-\x2f]*[\x30-\x7e]")
_TABLE_OF = {"patient": "patients", "study": "studies", "series": "series", "instance": "instances"}
_INSTANCES = (
    select(
        Study.study_uid, Series.series_uid, Instance.sop_uid, Instance.sop_class_uid,
        Instance.transfer_syntax_uid, Instance.size, Instance.number_of_frames,
    )
    .join(Series, Instance.series_pk == Series.pk)
    .join(Study, Series.study_pk == Study.pk)
)
# Ingest statements, built once (building a statement costs more than running it).
_SQL_EXISTING = select(Instance.content_hash).where(Instance.sop_uid == bindparam("b_sop"))
_PATIENT_ID_TAG = 0x00100020
_SQL_PATIENT = select(Patient.pk).where(Patient.patient_id == bindparam("b_pid"))
_SQL_IDENTITY = select(Identity.pk).where(
    Identity.patient_pk == bindparam("b_ppk"), Identity.entry_hash == bindparam("b_entry")
)
_SQL_STUDY = select(Study.pk, Study.modalities).where(Study.study_uid == bindparam("b_uid")).with_for_update()
_SQL_SERIES = select(Series.pk, Series.study_pk).where(Series.series_uid == bindparam("b_uid"))
_SQL_KEY = select(DataKey.wrapped).where(DataKey.study_uid == bindparam("b_uid"))
_SQL_STUDY_COUNTS = (
    update(Study)
    .where(Study.pk == bindparam("b_pk"))
    .values(
        num_instances=Study.num_instances + 1,
        num_series=Study.num_series + bindparam("b_new", type_=Integer),
        modalities=bindparam("b_mods"),
    )
)
_SQL_SERIES_COUNT = (
    update(Series).where(Series.pk == bindparam("b_pk")).values(num_instances=Series.num_instances + 1)
)
_LOCATE = (
    select(Instance.object_blob, Instance.transfer_syntax_uid, Series.series_uid, Study.study_uid,
           Instance.delta_blob, Patient.patient_id)
    .join(Series, Instance.series_pk == Series.pk)
    .join(Study, Series.study_pk == Study.pk)
    .join(Patient, Study.patient_pk == Patient.pk)  # the access decision needs it: no second lookup
    .where(Instance.sop_uid == bindparam("sop"))
)


@dataclass(frozen=True)
class Stored:
    """Result of an ingest; all values de-identified."""

    status: Literal["stored", "duplicate"]
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    original_sop_instance_uid_hash: str


@dataclass(frozen=True)
class InstanceRef:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    size: int
    number_of_frames: int | None


@dataclass(frozen=True)
class Streamed:
    """A retrieved object to send as it is opened: ``size`` bytes in ``chunks``.  Each of a
    large object's 1 MiB segments is authenticated before it is yielded, the first before
    this is returned; a later one that fails raises :class:`IntegrityError` mid-stream, and
    the sender must then cut the response (every byte it sent was authentic)."""

    size: int
    chunks: Iterator[bytes | bytearray | memoryview]

    @classmethod
    def whole(cls, data: bytes | bytearray) -> Streamed:
        """An object already in memory, sent in one piece."""
        return cls(len(data), iter((data,)))


@dataclass
class _Prepared:
    """An ingested object, de-identified and serialised, not yet sealed."""

    body: list  # parts of the de-identified Part 10 object (see memio.serialise_parts)
    size: int
    delta: bytes
    hashing: Future[str]  # content_hash of the body, computed beside sealing and writing

    @property
    def content_hash(self) -> str:
        return self.hashing.result()
    original_uid_hash: str
    original: OriginalIdentity
    original_accession: str
    values: dict


@dataclass(eq=False)
class _Job:
    """One object waiting for its index rows to be committed (see ``_commit_grouped``)."""

    prep: _Prepared
    obj_name: str
    delta_name: str
    stored_size: int
    data_key: bytes
    result: Stored | None = None
    error: BaseException | None = None


class _StaleKey(Exception):
    """The blobs were sealed with a study key that lost to another process's key."""


class Archive:
    """A safepacs archive on a data dir.  Thread-safe; one per process."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        store: BlobStore,
        kek: crypto.KekProvider,
        keys: Keys,
        identity: IdentityIndex,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._writer = (
            db.make_engine(settings.database_url, writer=True) if engine.dialect.name == "sqlite" else engine
        )
        self._store = store
        self._kek = kek
        self._keys = keys
        self._identity = identity
        self._options: Options = settings.options()
        self._write_lock = threading.Lock()
        self._key_lock = threading.Lock()
        self._identity_lock = threading.Lock()
        self._buffers: list[bytearray] = []
        self._buffers_lock = threading.Lock()
        self._data_keys: dict[str, bytes] = {}
        self._pending_keys: dict[str, tuple[bytes, bytes]] = {}  # study -> (key, wrapped), not yet committed
        self._commit_cv = threading.Condition()
        self._commit_queue: list[_Job] = []
        self._committing = False
        self._identities: dict[int, list[OriginalIdentity]] | None = None
        self._identity_seen = 0  # highest identity row decrypted into the cache
        #: what crash recovery removed at open; None when another process had the archive
        #: open (its blobs in flight are not orphans), recovery then waits for a lone open
        self.recovery: RecoveryReport | None = None
        self._lock_fd: int | None = None
        #: the service's own secrets (access, render, audit signing), wrapped by the KEK
        self.secrets = service_keys.WrappedSecrets(self._writer, lambda: self._kek, settings.data_dir / "keys")
        #: where every event goes: the tamper-evident log of the data dir
        self.audit: AuditSink = open_audit(engine, settings, keys=self.secrets)
        #: who may see what (issue "access control"); every decision is audited
        self.access = AccessControl(engine, self.secrets, audit=self.audit, oidc=settings.oidc_config(),
                                    vip=settings.vip_patients)
        # the anomaly rules' patient side (family-name tokens from the identity cache)
        self.access.enrich = PatientFamilies(self.access.profiles.hasher, engine, self._identity_cache)
        #: what each reader gets (levels, re-keyed identifiers, watermarks)
        self.masking = Masking(self.access, engine, self.secrets, audit=self.audit)
        self.access.ctx.listeners.append(self.masking.invalidate)  # revoked access: drop its renders

    # --- lifecycle ----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        data_dir: Path,
        *,
        database_url: str | None = None,
        store_url: str | None = None,
        ae_title: str = "SAFEPACS",
        kek: str | None = None,
        deid_options: Options | None = None,
    ) -> tuple[Archive, dict[str, tuple[str, str]]]:
        """A new archive in ``data_dir`` and its three administrator accounts, as
        ``{role: (username, one-time password)}`` (shown once; each must be changed at first
        sign-in).  ``kek``: ``file:PATH`` (default ``file:keys/kek.key``, created mode 0600)
        or ``env:VARIABLE``."""
        data_dir = Path(data_dir)
        if (data_dir / SETTINGS_FILE).exists():
            raise ArchiveError(f"{data_dir}: already a safepacs data dir")
        if data_dir.is_dir() and any(e.name not in PREPARED for e in os.scandir(data_dir)):
            raise ArchiveError(
                f"{data_dir}: not empty, and not a safepacs data dir (no {SETTINGS_FILE}); a new "
                f"archive needs a new or empty folder (or one holding only {', '.join(sorted(PREPARED))}): "
                "init makes the folder private (mode 0700) and manages what is in it. After an "
                "interrupted init, remove the folder and run init again")
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        data_dir.chmod(0o700)  # nothing in it is plaintext, but nobody else needs to look
        opts = deid_options or Options()
        settings = Settings(
            data_dir=data_dir,
            database_url=database_url or "",
            store_url=store_url or "",
            kek=kek or "file:keys/kek.key",
            ae_title=ae_title,
            deid_options=Settings.options_dict(opts),
        )
        kek_provider = crypto.load_kek(settings.kek, data_dir, create=True)
        engine = db.make_engine(settings.database_url)
        db.upgrade(engine)
        store = open_store(settings.store_url)
        if isinstance(store, S3Store):
            store.ensure_bucket()
        with Session(engine) as session, session.begin():
            if session.scalar(select(func.count()).select_from(SiteKey)):
                raise ArchiveError("the index database already holds an archive")
            secrets_ = {_DEID_KEY: Keys.generate().secret, _INDEX_KEY: crypto.generate_key()}
            for name, secret in secrets_.items():
                wrapped = kek_provider.wrap(secret, b"site:" + name.encode())
                session.add(SiteKey(name=name, wrapped=wrapped, kek_id=kek_provider.key_id))
        settings.save()
        archive = cls(
            settings, engine, store, kek_provider, Keys(secrets_[_DEID_KEY]),
            IdentityIndex(secrets_[_INDEX_KEY]),
        )
        archive._lock_fd, _ = _take_lock(data_dir)
        fcntl.flock(archive._lock_fd, fcntl.LOCK_SH)
        from safepacs.access import bootstrap

        admins = bootstrap(engine, archive.secrets, audit=archive.audit)
        return archive, admins

    @classmethod
    def open(cls, data_dir: Path, *, database_url: str | None = None) -> Archive:
        """Open an archive: check the KEK and schema, then run crash recovery."""
        settings = Settings.load(Path(data_dir), database_url=database_url)
        kek_provider = crypto.load_kek(settings.kek, settings.data_dir)
        engine = db.make_engine(settings.database_url)
        try:
            return cls._open_on(settings, engine, kek_provider)
        except BaseException:
            engine.dispose()
            raise

    @classmethod
    def _open_on(cls, settings: Settings, engine: Engine, kek_provider: crypto.KekProvider) -> Archive:
        db.ensure_schema(engine)
        with Session(engine) as session:
            rows = {k.name: k for k in session.scalars(select(SiteKey))}
        if not {_DEID_KEY, _INDEX_KEY} <= set(rows):
            raise ArchiveError("the index database holds no archive keys (wrong --database-url?)")
        if any(r.kek_id != kek_provider.key_id for r in rows.values()):
            raise crypto.CryptoError(
                f"wrong key-encryption key: this archive needs KEK {rows[_DEID_KEY].kek_id}, "
                f"the one given is {kek_provider.key_id}; nothing was changed"
            )
        deid_secret = kek_provider.unwrap(rows[_DEID_KEY].wrapped, b"site:" + _DEID_KEY.encode())
        index_key = kek_provider.unwrap(rows[_INDEX_KEY].wrapped, b"site:" + _INDEX_KEY.encode())
        # key files of a data dir from before the service secrets were wrapped: import, shred
        service_keys.upgrade(service_keys.WrappedSecrets(engine, lambda: kek_provider, settings.data_dir / "keys"))
        store = open_store(settings.store_url)
        archive = cls(settings, engine, store, kek_provider, Keys(deid_secret), IdentityIndex(index_key))
        archive._lock_fd, alone = _take_lock(settings.data_dir)
        if alone:
            try:
                archive.recovery = recover(engine, store)
            finally:
                fcntl.flock(archive._lock_fd, fcntl.LOCK_SH)
        return archive

    def close(self) -> None:
        try:
            lastaccess.close(self)  # pending last-access times, before the engines go
        except Exception:  # noqa: BLE001 - closing must finish
            log.error("last-access times could not be written at close")
        vault = getattr(self, "_vault", None)
        if vault is not None:
            vault.close_all()  # overwrite the keys of open unseal windows
        masking = getattr(self, "masking", None)
        if masking is not None:
            masking.issuances.close()  # rows of copies still being made, then the committer ends
        close_audit = getattr(self.audit, "close", None)
        if close_audit is not None:
            try:
                close_audit()  # writes what is queued; before the engine goes
            except Exception:  # noqa: BLE001 - closing must finish; the log says why it failed
                log.error("the audit log could not be flushed at close")
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the shared lock
            self._lock_fd = None
        self._engine.dispose()
        self._writer.dispose()
        self._data_keys.clear()
        self._pending_keys.clear()
        self._identities, self._identity_seen = None, 0

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- tokens -------------------------------------------------------------------
    def create_token(self, name: str) -> str:
        """An API token for the service account ``name`` (the de-identified view of every
        study), provisioned by whoever holds the data dir; see :mod:`safepacs.archive.provision`."""
        from safepacs.archive.provision import service_token

        return service_token(self.access, name)

    def authenticate(self, token: str, *, address: str = "") -> Principal | None:
        """The caller of a JWT access token or an API token, or None."""
        if not token or len(token) > 4096:
            return None
        return self.access.authenticate(token, address=address)

    # --- ingest -------------------------------------------------------------------
    def ingest(self, data: bytes, *, source: str) -> Stored:
        """De-identify, seal and store one Part 10 object; returns once it is durable.

        Raises InvalidDicom, RejectedFile, or Conflict (same SOP Instance UID, other content).
        """
        with panics_as_errors():  # a native codec's panic is no Exception: see dicom.panics
            prep = self._prepare(data)
        v = prep.values
        found = self._existing(v["sop_uid"], prep)
        if found is not None:
            return found
        for _attempt in range(3):
            dk = self._data_key(v["study_uid"], create=True)
            obj_name, delta_name = new_names("obj", "dlt")
            sop = v["sop_uid"].encode()
            written = [obj_name, delta_name]
            buffer = self._take_buffer(prep.size)
            try:
                sealed_obj = crypto.seal_parts(dk, prep.body, b"object\x00" + sop, buffer)
                sealed_delta = crypto.seal(dk, prep.delta, b"delta\x00" + sop)
                stored_size = len(sealed_obj) + len(sealed_delta)
                self._store.put_many([(obj_name, sealed_obj), (delta_name, sealed_delta)])  # type: ignore[list-item]
            except BaseException:
                self._give_buffer(buffer)
                self._delete_quietly(written)
                raise
            del sealed_obj
            self._give_buffer(buffer)  # put_many returned: nothing reads the buffer any more
            try:
                prep.content_hash  # noqa: B018 - wait for the hash here, not holding the index lock
                stored = self._commit_grouped(
                    _Job(prep, obj_name, delta_name, stored_size, dk)
                )
            except BaseException as exc:
                self._delete_quietly(written)
                if isinstance(exc, _StaleKey):  # another process created the study's key first
                    self._forget_key(v["study_uid"])
                    continue
                raise
            if stored.status == "duplicate":  # lost a race with an identical object
                for name in written:
                    self._store.delete(name)
            return stored
        raise ArchiveError("cannot agree on the study's data key (concurrent writers)")

    def _delete_quietly(self, names: list[str]) -> None:
        for name in names:  # best effort; recovery removes what a crash leaves
            try:
                self._store.delete(name)
            except Exception:  # noqa: BLE001
                pass

    def _prepare(self, data: bytes) -> _Prepared:
        parsed = memio.parse(bytes(data) if not isinstance(data, bytes) else data)
        ds = parsed.dataset
        read_as_written(ds)  # before the name is read: e.g. UTF-8 declared as GB18030 reads as UTF-8
        try:
            original_sop = str(ds.get("SOPInstanceUID", "") or "").strip()
            original = OriginalIdentity(
                str(ds.get("PatientID", "") or "").strip(),
                _ESCAPES.sub("", str(ds.get("PatientName", "") or "")),
                _ESCAPES.sub("", str(ds.get("PatientAddress", "") or "")).strip(),
            )
            accession = str(ds.get("AccessionNumber", "") or "").strip()
            original_study = str(ds.get("StudyInstanceUID", "") or "").strip()
        except Exception as exc:  # noqa: BLE001 - undecodable values; never echo them
            raise InvalidDicom(f"object: cannot decode identifying attributes ({exc.__class__.__name__})") from None
        if not original_sop:
            raise InvalidDicom("object: no SOPInstanceUID")
        delta = door.deidentify(parsed, self._options, self._keys)
        if not original.patient_id and original_study:
            self._study_as_patient(ds, delta, original_study)
        if parsed.trailer is not None:
            for elem in list(parsed.trailer.elements()):
                delta.record((), parsed.trailer, elem.tag)
        values = index_values(ds)
        body = memio.serialise_parts(parsed, ds)
        return _Prepared(
            body=body,
            size=sum(memoryview(p).nbytes for p in body),
            delta=delta.to_bytes(),
            hashing=_HASHERS.submit(content_hash, body),
            original_uid_hash=self._identity.uid_hash(original_sop),
            original=original,
            original_accession=accession,
            values=values,
        )

    def _study_as_patient(self, ds: Dataset, delta: IdentityDelta, original_study: str) -> None:
        """An object without a PatientID is filed under a pseudonym of its own study: under
        one shared empty ID, unrelated people's studies would form one "patient", and no
        clinician could be given care for it.  The delta keeps the ID as it was (absent or
        empty), so the identified view shows the original."""
        delta.record((), ds, _PATIENT_ID_TAG)
        ds.PatientID = self._keys.pseudonym("StudyWithoutPatientID", original_study)

    def _stored(self, prep: _Prepared, status: Literal["stored", "duplicate"]) -> Stored:
        v = prep.values
        return Stored(status, v["study_uid"], v["series_uid"], v["sop_uid"], v["sop_class_uid"], prep.original_uid_hash)

    def _existing(self, sop_uid: str, prep: _Prepared, conn: Connection | None = None) -> Stored | None:
        """Duplicate (same content) or Conflict (other content) when the UID is stored."""
        if conn is None:
            with self._engine.connect() as c:
                found = c.scalar(_SQL_EXISTING, {"b_sop": sop_uid})
        else:
            found = conn.scalar(_SQL_EXISTING, {"b_sop": sop_uid})
        if found is None:
            return None
        if same_content(found, prep.content_hash, prep.body) or self._same_object(sop_uid, prep, conn):
            return self._stored(prep, "duplicate")
        raise Conflict(
            "an instance with this SOP Instance UID and different content is already stored"
        )

    def _same_object(self, sop_uid: str, prep: _Prepared, conn: Connection | None) -> bool:
        """The stored object and ``prep`` are the same object encoded otherwise (another door,
        another sender's padding or VR encoding): :mod:`safepacs.archive.sameness`.  Read only
        when the content hashes differ; anything unreadable counts as other content."""
        try:
            if conn is None:
                with self._engine.connect() as c:
                    row = c.execute(_LOCATE, {"sop": sop_uid}).first()
            else:
                row = conn.execute(_LOCATE, {"sop": sop_uid}).first()
            if row is None:
                return False
            stored = crypto.unseal(self._data_key(row.study_uid), self._blob(row.object_blob),
                                   b"object\x00" + sop_uid.encode())
        except Exception:  # noqa: BLE001 - a missing or tampered blob is not "the same"
            return False
        return same_object(stored, b"".join(bytes(p) for p in prep.body))

    def _commit_grouped(self, job: _Job) -> Stored:
        """Commit ``job``'s index rows, in one transaction with those of every other ingest
        waiting at the same moment (group commit: one database sync for all of them).

        The first thread to arrive commits the batch for everybody; each object has its own
        savepoint, so one refused object (a conflict, a series of another study) does not
        fail the others.  A sender is answered only after the batch's COMMIT returned.
        """
        for _attempt in range(4):
            job.result = job.error = None
            with self._commit_cv:
                self._commit_queue.append(job)
                while job.result is None and job.error is None:
                    if self._committing:
                        self._commit_cv.wait()
                        continue
                    self._committing = True
                    batch, self._commit_queue = self._commit_queue, []
                    self._commit_cv.release()
                    try:
                        self._commit_batch(batch)
                    finally:
                        self._commit_cv.acquire()
                        self._committing = False
                        self._commit_cv.notify_all()
            if job.result is not None:
                return job.result
            if not isinstance(job.error, DBIntegrityError):
                raise job.error  # type: ignore[misc]
            # another process inserted the same patient, study or series between our read and
            # our insert; run again, it will find their rows
        raise ArchiveError("the index refused the object (concurrent writers)")

    def _commit_batch(self, batch: list[_Job]) -> None:
        try:
            with self._write_lock, self._writer.begin() as conn:
                for job in batch:
                    try:
                        with conn.begin_nested():
                            job.result = self._commit_one(conn, job)
                    except (ArchiveError, InvalidDicom, _StaleKey, DBIntegrityError) as exc:
                        job.result, job.error = None, exc
        except BaseException as exc:  # the COMMIT failed: nothing of the batch is stored
            for job in batch:
                job.result, job.error = None, exc
            if not isinstance(exc, Exception):
                raise
            return
        with self._key_lock:  # keys created with their study are now durable
            for job in batch:
                if job.result is not None:
                    uid = job.prep.values["study_uid"]
                    if self._pending_keys.pop(uid, None) is not None:
                        self._data_keys[uid] = job.data_key

    def _commit_one(self, conn: Connection, job: _Job) -> Stored:
        """The index rows of one object (SQLAlchemy Core: the ORM cost more than the SQL)."""
        prep = job.prep
        v = prep.values
        found = self._existing(v["sop_uid"], prep, conn)
        if found is not None:
            return found
        patient_pk = conn.scalar(_SQL_PATIENT, {"b_pid": v["patient_id"]})
        if patient_pk is None:
            patient_pk = conn.execute(insert(Patient), {
                "patient_id": v["patient_id"], "patient_name": v["patient_name"],
                "birth_date": v["birth_date"], "sex": v["sex"],
            }).inserted_primary_key[0]
        self._add_identity(conn, patient_pk, v["patient_id"], prep.original)
        # the study row is locked (PostgreSQL; SQLite writers are serial anyway) so that
        # counters and ModalitiesInStudy are updated by one writer at a time
        study = conn.execute(_SQL_STUDY, {"b_uid": v["study_uid"]}).first()
        if study is None:
            study_pk = conn.execute(insert(Study), {
                "study_uid": v["study_uid"], "patient_pk": patient_pk, "study_date": v["study_date"],
                "study_time": v["study_time"], "accession_number": v["accession_number"],
                "accession_hash": (
                    self._identity.accession_hash(prep.original_accession)
                    if prep.original_accession else None
                ),
                "study_id": v["study_id"], "study_description": v["study_description"],
                "referring_physician_name": v["referring_physician_name"], "modalities": "|",
                "num_series": 0, "num_instances": 0,
            }).inserted_primary_key[0]
            modalities = "|"
        else:
            study_pk, modalities = study
        self._check_data_key(conn, v["study_uid"], job.data_key)
        series = conn.execute(_SQL_SERIES, {"b_uid": v["series_uid"]}).first()
        new_series = series is None
        if series is None:
            series_pk = conn.execute(insert(Series), {
                "series_uid": v["series_uid"], "study_pk": study_pk, "modality": v["modality"],
                "series_number": v["series_number"], "series_description": v["series_description"],
                "num_instances": 0,
            }).inserted_primary_key[0]
        elif series.study_pk != study_pk:
            raise InvalidDicom("object: its series belongs to another study")
        else:
            series_pk = series.pk
        if v["modality"] and f"|{v['modality']}|" not in modalities:
            modalities = modalities + v["modality"] + "|"
        conn.execute(_SQL_STUDY_COUNTS, {"b_pk": study_pk, "b_new": int(new_series), "b_mods": modalities})
        conn.execute(_SQL_SERIES_COUNT, {"b_pk": series_pk})
        conn.execute(insert(Instance), {
            "sop_uid": v["sop_uid"], "series_pk": series_pk, "sop_class_uid": v["sop_class_uid"],
            "transfer_syntax_uid": v["transfer_syntax_uid"],
            "instance_number": v["instance_number"], "rows": v["rows"], "columns": v["columns"],
            "bits_allocated": v["bits_allocated"], "number_of_frames": v["number_of_frames"],
            "size": prep.size, "content_hash": prep.content_hash,
            "original_uid_hash": prep.original_uid_hash, "object_blob": job.obj_name,
            "delta_blob": job.delta_name, "stored_size": job.stored_size, "created_at": _now(),
        })
        return self._stored(prep, "stored")

    def _add_identity(self, conn: Connection, patient_pk: int, pseudonym: str, ident: OriginalIdentity) -> None:
        if not ident.patient_id and not ident.patient_name:
            return
        entry = self._identity.entry_hash(ident)
        if conn.scalar(_SQL_IDENTITY, {"b_ppk": patient_pk, "b_entry": entry}) is not None:
            return
        conn.execute(insert(Identity), {
            "patient_pk": patient_pk,
            "id_hash": self._identity.id_hash(ident.patient_id),
            "entry_hash": entry,
            "sealed": self._identity.seal(ident, pseudonym),
        })

    def _take_buffer(self, size: int) -> bytearray:
        """A sealing buffer from the archive's pool, grown as needed.  Fresh 8 MB allocations
        cost more than the encryption; a pool (unlike one buffer per thread, and the web
        server's worker threads come and go) holds only as many as ingests run at once."""
        need = crypto.sealed_size(size) + 16
        with self._buffers_lock:
            buf = self._buffers.pop() if self._buffers else None
        if buf is None or len(buf) < need:
            buf = bytearray(need + need // 8)
        return buf

    def _give_buffer(self, buf: bytearray) -> None:
        with self._buffers_lock:
            if len(self._buffers) < 8:
                self._buffers.append(buf)
                self._buffers.sort(key=len)  # the largest is taken first

    def _data_key(self, study_uid: str, *, create: bool = False) -> bytes:
        """The study's data key: cached once known to be in the index.  A new study's key
        (``create``) is only pending until the study's first object commits: its row goes
        into that same transaction (one database sync less per new study), and a key whose
        study never committed is simply never written."""
        key = self._data_keys.get(study_uid)
        if key is not None:
            return key
        context = b"study:" + study_uid.encode()
        with self._key_lock:
            key = self._data_keys.get(study_uid)
            if key is not None:
                return key
            with self._engine.connect() as conn:
                wrapped = conn.scalar(_SQL_KEY, {"b_uid": study_uid})
            if wrapped is not None:
                key = self._kek.unwrap(wrapped, context)
                self._data_keys[study_uid] = key
                self._pending_keys.pop(study_uid, None)
                return key
            # no wrapped key: a sealed study? (a study with a pending key is not; never cached)
            sealed = None if study_uid in self._pending_keys else self._sealed_data_key(study_uid)
            if sealed is not None:
                return sealed
            if not create:
                raise NotFound("no such study")
            pending = self._pending_keys.get(study_uid)
            if pending is None:
                key = crypto.generate_key()
                pending = (key, self._kek.wrap(key, context))
                self._pending_keys[study_uid] = pending
            return pending[0]

    def _check_data_key(self, conn: Connection, study_uid: str, key: bytes) -> None:
        """In the commit: write a pending key, or make sure the stored one is the one the
        blobs were sealed with (another process may have created the study meanwhile)."""
        if self._data_keys.get(study_uid) == key:
            return
        wrapped = conn.scalar(_SQL_KEY, {"b_uid": study_uid})
        if wrapped is None:
            pending = self._pending_keys.get(study_uid)
            if pending is None or pending[0] != key:
                raise _StaleKey()
            conn.execute(insert(DataKey), {"study_uid": study_uid, "wrapped": pending[1], "kek_id": self._kek.key_id})
        elif self._kek.unwrap(wrapped, b"study:" + study_uid.encode()) != key:
            raise _StaleKey()

    def _forget_key(self, study_uid: str) -> None:
        with self._key_lock:
            self._pending_keys.pop(study_uid, None)
            self._data_keys.pop(study_uid, None)

    # --- retrieval ----------------------------------------------------------------
    # --- authorisation ------------------------------------------------------------
    def authorize(self, principal: Principal, study_uid: str, *, action: str = "read",
                  patient: str | None = None) -> Decision:
        """The caller's decision for one stored study, made on the server's own records.

        A refusal raises NotFound, exactly as for a study that does not exist: whether a study
        you may not see exists is itself something you may not learn.  The access layer
        records the decision either way.  ``patient``: the study's patient pseudonym, when the
        caller has just read it from the index with the study (never from the request).
        """
        decision = self.access.decide(principal, study_uid, action=action, patient=patient)
        if not decision.allowed:
            raise NotFound("no such study, series or instance")
        return decision

    def resolve(
        self, principal: Principal, study_uid: str | None, series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> tuple[str | None, str | None, str | None]:
        """UIDs as the caller sees them -> stored UIDs (a research project sees its own)."""
        return self.masking.resolve(principal, study_uid, series_uid, sop_uid)

    def instances(
        self, *, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None,
        principal: Principal,
    ) -> list[InstanceRef]:
        """Instances of a study (or one series, or one instance) the caller may read, in
        stored order, under their stored UIDs."""
        _uid_or_notfound(study_uid, series_uid, sop_uid)
        study_uid, series_uid, sop_uid = self.resolve(principal, study_uid, series_uid, sop_uid)
        assert study_uid is not None
        self.authorize(principal, study_uid)
        stmt = _INSTANCES.where(Study.study_uid == study_uid)
        if series_uid is not None:
            stmt = stmt.where(Series.series_uid == series_uid)
        if sop_uid is not None:
            stmt = stmt.where(Instance.sop_uid == sop_uid)
        with self._engine.connect() as conn:  # Core, not the ORM: this is on every retrieve
            rows = conn.execute(stmt.order_by(Instance.pk)).all()
        if not rows:
            raise NotFound("no such study, series or instance")
        return [InstanceRef(*row) for row in rows]

    def read_instance(
        self,
        sop_uid: str,
        *,
        principal: Principal,
        study_uid: str | None = None,
        series_uid: str | None = None,
        transfer_syntaxes: set[str] | None = None,
        frame: Callable[[int], tuple[bytes, bytes]] | None = None,
        display: DisplayRequest | None = None,
        header_only: bool = False,
        request_id: str = "",
        stream: bool = False,
    ) -> bytes | bytearray | Streamed:
        """Part 10 bytes of the object at the caller's access level, decrypted and
        authenticated (UIDs may be the stored ones or, for a research project, its own).
        ``display``: a PNG/JPEG of one frame instead, marked in display values;
        ``header_only``: the rendered object unmarked and unissued, for callers that keep
        only its header (metadata); ``stream``: a :class:`Streamed` instead of one buffer
        (for a sender: a de-identified radiograph's first bytes go out while the rest is
        still being opened).

        One index query finds the object and checks it belongs to ``study_uid`` and
        ``series_uid`` when given (NotFound otherwise), then the caller's grant for that study
        is checked (NotFound when refused), and the transfer syntax is checked against
        ``transfer_syntaxes`` when given (NotAcceptable otherwise).  ``frame(size)`` may return
        ``(prefix, suffix)``: the result is then prefix + object + suffix in one buffer,
        decrypted in place, so a multipart response is sent without copying the object again.
        """
        _uid_or_notfound(sop_uid, study_uid, series_uid)
        study_uid, series_uid, resolved = self.resolve(principal, study_uid, series_uid, sop_uid)
        assert resolved is not None
        sop_uid = resolved
        with self._engine.connect() as conn:
            row = conn.execute(_LOCATE, {"sop": sop_uid}).first()
        if row is None or (study_uid is not None and row.study_uid != study_uid) or (
            series_uid is not None and row.series_uid != series_uid
        ):
            raise NotFound("no such instance")
        decision = self.authorize(principal, row.study_uid, patient=row.patient_id)
        lastaccess.touch(self, row.study_uid)  # retention "from last access": a dict update
        if transfer_syntaxes is not None and row.transfer_syntax_uid not in transfer_syntaxes:
            raise NotAcceptable("the stored transfer syntax was not asked for")
        if decision.level != "deidentified" or display is not None:
            # the stored object is read only when no cached render serves the request
            data = self._read_masked(principal, decision, row, sop_uid, frame,
                                     display=display, header_only=header_only, request_id=request_id)
            return Streamed.whole(data) if stream else data
        blob = self._blob(row.object_blob)
        key = self._data_key(row.study_uid)
        context = b"object\x00" + sop_uid.encode()
        size = crypto.plain_size(blob)
        if stream and size > crypto.SEGMENT:
            return _streamed(key, blob, context, frame, size)
        data = _opened(key, blob, context, frame, size)
        return Streamed.whole(data) if stream else data

    def _read_masked(self, principal: Principal, decision: Decision, row: object, sop_uid: str,
                     frame: Callable[[int], tuple[bytes, bytes]] | None, *,
                     display: DisplayRequest | None = None, header_only: bool = False,
                     request_id: str = "") -> bytes:
        """The object rendered for the caller's level (identity re-applied, re-keyed, or cut
        to the keep list; watermarked as the level says).  The unmarked render comes from
        the sealed cache when there (the grant was checked above, for this request)."""
        def plain() -> bytes:
            cached = self.masking.cached(principal, decision, sop_uid)
            return cached if cached is not None else self._render_plain(principal, decision, row, sop_uid)

        if display is not None:
            return self.masking.rendered_image(principal, decision, display, sop_uid=sop_uid, plain=plain,
                                               request_id=request_id)
        data = self.masking.finish(principal, decision, plain(), sop_uid=sop_uid, request_id=request_id,
                                   header_only=header_only)
        if frame is None:
            return data
        prefix, suffix = frame(len(data))
        return b"".join((prefix, data, suffix))

    def _blob(self, name: str) -> bytes:
        try:
            return self._store.get(name)
        except BlobNotFound:
            raise IntegrityError("the stored object is missing from the blob store") from None

    def _render_plain(self, principal: Principal, decision: Decision, row: object, sop_uid: str) -> bytes:
        blob = self._blob(row.object_blob)  # type: ignore[attr-defined]
        key = self._data_key(row.study_uid)  # type: ignore[attr-defined]
        try:
            stored = crypto.unseal(key, blob, b"object\x00" + sop_uid.encode())
            delta = None
            if self.masking.needs_delta(decision):
                try:
                    sealed_delta = self._store.get(row.delta_blob)  # type: ignore[attr-defined]
                except BlobNotFound:
                    raise IntegrityError("the identity delta is missing from the blob store") from None
                delta = crypto.unseal(key, sealed_delta, b"delta\x00" + sop_uid.encode())
        except crypto.TamperedError as exc:
            raise IntegrityError(str(exc)) from None
        return self.masking.render_plain(principal, decision, stored, delta, sop_uid=sop_uid)

    def metadata(self, sop_uid: str, *, principal: Principal) -> Dataset:
        """The header at the caller's access level, without pixel data (read unmarked: no
        pixels leave, so no copy is issued)."""
        return self.header(sop_uid, principal=principal)[0]

    def header(self, sop_uid: str, *, principal: Principal) -> tuple[Dataset, tuple[int, str] | None]:
        """:meth:`metadata`, and the tag and VR of the pixel data element the object has, if
        any: WADO-RS metadata links the pixels by their own tag (a Parametric Map's are Float
        or Double Float Pixel Data), and only when there are pixels."""
        data = self.read_instance(sop_uid, principal=principal, header_only=True)
        found: list[tuple[int, str]] = []

        def at_pixels(tag: BaseTag, vr: str | None, length: int) -> bool:
            if tag in PIXEL_TAGS:
                found.append((int(tag), str(vr) if vr else PIXEL_TAGS[tag]))
            return tag.group == 0x7FE0 or tag >= 0x7FE00008

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = read_partial(io.BytesIO(data), stop_when=at_pixels)
        return ds, (found[0] if found else None)

    # --- search -------------------------------------------------------------------
    def search(
        self,
        level: Literal["study", "series", "instance"],
        filters: Mapping[str, str | list[str]],
        *,
        principal: Principal,
        study_uid: str | None = None,
        series_uid: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        include: Sequence[str] = (),
        fuzzy: bool = False,
    ) -> list[Dataset]:
        """QIDO search (see :mod:`safepacs.index.query` for the matching rules).

        Only studies the caller may read now are matched, inside the database query (no count
        or existence leaks).  Readers whose level is ``identified`` (care relationship, own
        record, break-glass) also match PatientID, PatientName and AccessionNumber against
        the ORIGINAL values (through the identity index) and get the original
        PatientName/PatientID back; research projects match and see their own identifiers;
        everybody else sees the values of their level.
        """
        if level not in query.LEVELS:
            raise query.QueryError(f"query level must be one of {', '.join(query.LEVELS)}")
        plain: dict[str, str | list[str]] = {}
        extra: list[ColumnElement[bool]] = [self.access.visible_studies(principal)]
        identity_ok = self.masking.may_match_identity(principal)
        for key, value in filters.items():
            kw = query.keyword(key)
            value = self.masking.filter_value(principal, kw, value)
            if kw in ("PatientID", "PatientName", "AccessionNumber"):
                a = query.attr(kw)
                cond = query.condition(a, value)
                if cond is None:
                    continue
                if identity_ok:
                    cond = or_(cond, self._identity_condition(kw, value, fuzzy))
                extra.append(cond)
            else:
                plain[kw] = value
        study_uid, series_uid, _ = self.resolve(principal, study_uid, series_uid)
        if study_uid is not None:
            extra.append(Study.study_uid == query.check_uid(study_uid, "StudyInstanceUID"))
        if series_uid is not None:
            extra.append(Series.series_uid == query.check_uid(series_uid, "SeriesInstanceUID"))
        stmt = query.build(level, plain, extra=extra, limit=limit, offset=offset)
        wanted = query.return_attributes(level, include, scoped=study_uid is not None)
        with Session(self._engine) as session:
            rows = session.execute(stmt).all()
            out = []
            memo: dict[str, Decision] = {}
            identities: list[dict[int, list[OriginalIdentity]]] = []  # read once per query
            for row in rows:
                tables = {type(obj).__tablename__: obj for obj in row}
                out.append(self._result(tables, wanted, principal, memo, identities))
        return out

    def _result(self, tables: dict, wanted: list[str], principal: Principal,
                memo: dict[str, Decision], identities: list[dict[int, list[OriginalIdentity]]]) -> Dataset:
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        patient = tables["patients"]
        study_uid = tables["studies"].study_uid
        decision = self.masking.listing_decision(principal, study_uid, memo)
        original = None
        if decision.level == "identified" or self.masking.level(decision).header == "original":
            if not identities:
                identities.append(self._identity_cache())
            ids = identities[0].get(patient.pk)
            original = ids[0] if ids else None
        for kw in wanted:
            a = query.ATTRS[kw]
            value = getattr(tables[_TABLE_OF[a.level]], a.column)
            if kw == "ModalitiesInStudy":
                value = [m for m in value.split("|") if m]
            elif original is not None and kw == "PatientID" and original.patient_id:
                value = original.patient_id
            elif original is not None and kw == "PatientName" and original.patient_name:
                value = original.patient_name
            if value is None:
                value = ""
            if a.vr in ("IS",) and value != "":
                value = str(value)
            setattr(ds, kw, value)
        return self.masking.render_result(principal, decision, ds)

    def _identity_cache(self) -> dict[int, list[OriginalIdentity]]:
        """Decrypted identity entries by patient, in memory only.  Entries added by other
        processes (an import beside the server) are picked up by their row numbers."""
        with self._identity_lock:
            cache = self._identities if self._identities is not None else {}
            with Session(self._engine) as session:
                rows = session.execute(
                    select(Identity.pk, Identity.patient_pk, Identity.sealed, Patient.patient_id)
                    .join(Patient, Identity.patient_pk == Patient.pk)
                    .where(Identity.pk > self._identity_seen)
                    .order_by(Identity.pk)
                ).all()
            for pk, patient_pk, sealed, pseudonym in rows:
                try:
                    cache.setdefault(patient_pk, []).append(self._identity.open(sealed, pseudonym))
                except crypto.TamperedError:
                    pass  # a damaged entry matches nothing
                self._identity_seen = max(self._identity_seen, pk)
            self._identities = cache
            return cache

    def _identity_condition(self, kw: str, value: str | list[str], fuzzy: bool) -> ColumnElement[bool]:
        values = [v.strip() for v in (value if isinstance(value, list) else [value]) if v.strip()]
        if kw == "AccessionNumber":
            exact = [v for v in values if not query.has_wildcard(v)]
            return Study.accession_hash.in_([self._identity.accession_hash(v) for v in exact])
        cache = self._identity_cache()
        pks: set[int] = set()
        if kw == "PatientID":
            # an exact ID is found by its keyed hash (indexed), then confirmed against the
            # authenticated entry; only wildcards need every entry
            exact = {v for v in values if not query.has_wildcard(v)}
            values = [v for v in values if query.has_wildcard(v)]
            if exact:
                with self._engine.connect() as conn:
                    candidates = conn.scalars(select(Identity.patient_pk).where(
                        Identity.id_hash.in_([self._identity.id_hash(v) for v in exact]))).all()
                pks.update(pk for pk in candidates
                           if any(ident.patient_id.strip() in exact for ident in cache.get(pk, ())))
            if not values:
                return Patient.pk.in_(sorted(pks))
        for pk, idents in cache.items():
            for ident in idents:
                for v in values:
                    if kw == "PatientName" and query.pn_matches(v, ident.patient_name, fuzzy=fuzzy):
                        pks.add(pk)
                    elif kw == "PatientID" and _id_matches(v, ident.patient_id):
                        pks.add(pk)
        return Patient.pk.in_(sorted(pks))

    # --- status -------------------------------------------------------------------
    def status(self) -> dict:
        """Counts, bytes stored, and health of the database and the blob store."""
        result: dict = {"ae_title": self.settings.ae_title, "kek_id": self._kek.key_id}
        try:
            with Session(self._engine) as session:
                session.execute(text("SELECT 1"))
                for name, model in (("patients", Patient), ("studies", Study), ("series", Series), ("instances", Instance)):
                    result[name] = session.scalar(select(func.count()).select_from(model)) or 0
                result["bytes_stored"] = session.scalar(select(func.coalesce(func.sum(Instance.stored_size), 0))) or 0
                result["bytes_deidentified"] = session.scalar(select(func.coalesce(func.sum(Instance.size), 0))) or 0
            result["database"] = "ok"
            result["schema_revision"] = db.current_revision(self._engine)
        except SQLAlchemyError as exc:
            result["database"] = f"error ({exc.__class__.__name__})"
        result["store"] = "ok" if self._store.healthy() else "unreachable"
        result["database_backend"] = self._engine.dialect.name
        result["store_backend"] = type(self._store).__name__
        if self.recovery is not None:
            result["recovery"] = self.recovery.__dict__
        return result

    # --- sealed split storage (issue 8; see safepacs.store.sealing) ---------------------
    def _sealed_data_key(self, study_uid: str) -> bytes | None:
        """None for a study that is not sealed; the key of an open unseal window; else
        raises ``Sealed`` (k custodian approvals are needed first)."""
        from safepacs.store import sealing

        return sealing.data_key_hook(self._engine, getattr(self, "_vault", None), study_uid)

    def attach_vault(self, vault: object) -> None:
        """Serve sealed studies: their blobs come from the vault's split store (read after
        the primary store) and their keys from its unseal windows."""
        from safepacs.store.sealing import TieredStore

        self._vault = vault
        if not isinstance(self._store, TieredStore):
            self._store = TieredStore(self._store, vault.store)  # type: ignore[attr-defined]


# --- helpers ----------------------------------------------------------------------------
LOCK_FILE = "archive.lock"


def _take_lock(data_dir: Path) -> tuple[int, bool]:
    """Every open archive holds a shared lock on DATA_DIR/archive.lock; recovery needs it
    exclusively, so it never deletes the blobs another live process is about to commit.
    Returns (fd, True) holding the exclusive lock, or (fd, False) holding a shared one.
    The kernel drops the lock of a crashed process."""
    fd = os.open(Path(data_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd, True
    except BlockingIOError:
        fcntl.flock(fd, fcntl.LOCK_SH)
        return fd, False


#: Hashing runs beside sealing and the blob writes (BLAKE3 releases the GIL on big buffers),
#: which takes a few milliseconds off every ingest's latency.
_HASHERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="safepacs-hash")


#: Marks a content hash taken with BLAKE3 (base64url, 43 characters); a bare 64-digit hex value
#: is the SHA-256 that archives before this format stored, still compared as such.
_BLAKE3_PREFIX = "b3:"


def content_hash(parts: list) -> str:
    """The de-identified object's content hash (duplicates and conflicts are told apart by
    it): BLAKE3, about 3.5 times as fast as SHA-256 here, which was an eighth of the
    server's CPU during ingest."""
    digest = blake3.blake3()
    for part in parts:
        digest.update(part)
    return _BLAKE3_PREFIX + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")


def same_content(stored: str, prep_hash: str, parts: list) -> bool:
    """``stored`` (from the index) names the same content as the object being ingested,
    whichever hash it was taken with."""
    if stored.startswith(_BLAKE3_PREFIX):
        return hmac.compare_digest(stored, prep_hash)
    digest = hashlib.sha256()  # a row written before BLAKE3
    for part in parts:
        digest.update(part)
    return hmac.compare_digest(stored, digest.hexdigest())


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _uid_or_notfound(*uids: str | None) -> None:
    """Malformed UIDs (``../``, empty, too long) cannot name anything stored."""
    for uid in uids:
        if uid is not None:
            try:
                query.check_uid(uid)
            except ValueError:
                raise NotFound("not a valid UID") from None


def _id_matches(query_value: str, value: str) -> bool:
    if query.has_wildcard(query_value):
        import fnmatch

        return fnmatch.fnmatchcase(value, query_value.replace("[", "[[]"))
    return query_value == value.strip()


def open_audit(engine: Engine, settings: Settings, *, keys: service_keys.SecretSource | None = None) -> AuditSink:
    """The data dir's audit pipeline: anomaly rules, the tamper-evident log and its
    witnesses, the syslog export (see :mod:`safepacs.audit.trail`).  ``keys``: the archive's
    wrapped secrets (opened with the KEK from the settings when not given)."""
    from safepacs.audit.trail import Trail

    return Trail(engine, settings.data_dir, witness=settings.audit_witness,
                 syslog=settings.audit_syslog or None, vip=settings.vip_patients,
                 organisation=settings.organisation, keys=keys or service_keys.open_secrets(settings, engine))


def _opened(key: bytes, blob: bytes, context: bytes,
            frame: Callable[[int], tuple[bytes, bytes]] | None, size: int) -> bytes | bytearray:
    """The stored object (``size`` bytes) opened whole, framed by ``frame(size)`` when
    given (see :meth:`Archive.read_instance`)."""
    try:
        if frame is None:
            return crypto.unseal(key, blob, context)
        prefix, suffix = frame(size)
        end = len(prefix) + size
        out = bytearray(end + max(len(suffix), 15))
        with memoryview(out) as view:
            crypto.unseal_into(key, blob, context, view[len(prefix) :])
            view[: len(prefix)] = prefix
            view[end : end + len(suffix)] = suffix
    except crypto.TamperedError as exc:
        raise IntegrityError(str(exc)) from None
    del out[end + len(suffix) :]  # the cipher's slack, when the suffix is shorter
    return out


def _streamed(key: bytes, blob: bytes, context: bytes,
              frame: Callable[[int], tuple[bytes, bytes]] | None, size: int) -> Streamed:
    """The stored object (``size`` bytes) as a :class:`Streamed`, its first segment already
    authenticated (so a blob damaged there, or in its header, is an error before anything
    is sent)."""
    prefix, suffix = frame(size) if frame is not None else (b"", b"")
    segments = crypto.unseal_segments(key, blob, context)
    try:
        first = next(segments)
    except crypto.TamperedError as exc:
        raise IntegrityError(str(exc)) from None

    def chunks() -> Iterator[bytes]:
        yield prefix
        yield first
        try:
            yield from segments
        except crypto.TamperedError as exc:
            raise IntegrityError(str(exc)) from None
        yield suffix

    return Streamed(len(prefix) + size + len(suffix), chunks())
