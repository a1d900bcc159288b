"""Crypto-shredding: destroy a study so that nothing (API, CLI, the data dir, an older copy
of it, a backup) can recover it, and sign a destruction certificate.

Order, each step idempotent so a crash is finished by the next run:

1. the study's key is destroyed: the KEK-wrapped data key row (or, for a sealed study, its
   custodian shares) is deleted and the archive's key cache forgotten;
2. the KEK is rotated (``retention.kek``), which makes every older copy of that row -- in a
   file copy of the index, a dump -- unopenable; backups never held data keys at all
   (``retention.backup``);
3. the ciphertext blobs are deleted (primary store and split store);
4. the index rows (instances, series, study; the patient and its sealed identities when it
   has no other study) are deleted with SQLite's secure_delete on;
5. the certificate (study UID, patient pseudonym, policy, time, key fingerprints, SHA-256 of
   every blob deleted, approvers, whether the KEK was rotated) is signed, stored and handed
   to the audit sink as a STUDY_DELETED event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from safepacs.access.principal import Principal
from safepacs.audit import events as ev
from safepacs.audit.events import AuditEvent, AuditSink, LogSink
from safepacs.errors import SafepacsError
from safepacs.index.models import DataKey, Identity, Instance, Patient, Series, Study
from safepacs.retention import kek as kek_rotation
from safepacs.retention import plan as planning
from safepacs.retention import policy as policies
from safepacs.retention.certificate import Signer
from safepacs.retention.models import (
    DestructionCertificate,
    LegalHold,
    SealedShare,
    SealedStudy,
    StudyRetention,
)
from safepacs.store.blobs import StoreError
from safepacs.store.sealing import key_fingerprint

#: who may approve an erasure outside the policy: the security administrator, plus a second
#: approver from another account who is neither the auditor nor a data subject / outsider
SECOND_APPROVER_ROLES = ("security_admin", "system_admin", "physician", "radiologist")


class RetentionError(SafepacsError):
    """Destruction refused (legal hold, missing approvals) or impossible."""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Destroyed:
    study_uid: str
    certificate: str
    signature: str
    kek_rotated: bool


# --- facts and holds -----------------------------------------------------------------
def active_holds(session: Session) -> tuple[set[str], set[str]]:
    """(study UIDs, patient pseudonyms) under an active legal hold."""
    rows = session.execute(select(LegalHold.study_uid, LegalHold.patient_id).where(LegalHold.released_at.is_(None))).all()
    return {s for s, _ in rows if s}, {p for _, p in rows if p}


def load_facts(engine) -> list[planning.StudyFacts]:  # type: ignore[no-untyped-def]
    first = (
        select(Series.study_pk, func.min(Instance.created_at).label("first"))
        .join(Instance, Instance.series_pk == Series.pk)
        .group_by(Series.study_pk)
        .subquery()
    )
    with Session(engine) as session:
        held_studies, held_patients = active_holds(session)
        sealed = set(session.scalars(select(SealedStudy.study_uid)))
        extra = {r.study_uid: r for r in session.scalars(select(StudyRetention))}
        rows = session.execute(
            select(Study.study_uid, Study.modalities, Study.study_description, Study.study_date,
                   Patient.patient_id, Patient.birth_date, first.c.first)
            .join(Patient, Study.patient_pk == Patient.pk)
            .outerjoin(first, first.c.study_pk == Study.pk)
        ).all()
    facts = []
    for uid, mods, desc, sdate, pid, birth, first_at in rows:
        ex = extra.get(uid)
        facts.append(planning.StudyFacts(
            study_uid=uid, patient=pid, modalities=frozenset(m for m in (mods or "").split("|") if m),
            description=desc or "", birth_date=birth or "", study_date=sdate or "",
            first_stored=first_at or _now(), last_access=ex.last_access if ex else None,
            legal_basis=ex.legal_basis if ex else "", held=uid in held_studies or pid in held_patients,
            sealed=uid in sealed,
        ))
    return facts


def place_hold(engine, *, by: str, reason: str, study_uid: str | None = None, patient: str | None = None,  # type: ignore[no-untyped-def]
               audit: AuditSink | None = None) -> int:
    if bool(study_uid) == bool(patient):
        raise RetentionError("a legal hold names exactly one study or one patient pseudonym")
    with Session(engine) as session, session.begin():
        hold = LegalHold(study_uid=study_uid, patient_id=patient, reason=reason[:256], placed_by=by, placed_at=_now())
        session.add(hold)
        session.flush()
        pk = hold.pk
    (audit or LogSink()).record(AuditEvent(ev.APPLICATION_ACTIVITY, ev.CREATE, user=by, route="retention:hold",
                                           study_uid=study_uid or "", patient=patient or "", detail={"hold": pk}))
    return pk


def stored_studies(engine, *, study_uid: str | None = None, patient: str | None = None) -> int:  # type: ignore[no-untyped-def]
    """How many stored studies a hold on ``study_uid`` or ``patient`` covers now (a hold may
    precede its studies; none at all often means a mistyped identifier)."""
    query = select(func.count()).select_from(Study)
    if study_uid:
        query = query.where(Study.study_uid == study_uid)
    else:
        query = query.join(Patient, Study.patient_pk == Patient.pk).where(Patient.patient_id == (patient or ""))
    with Session(engine) as session:
        return int(session.scalar(query) or 0)


def release_hold(engine, pk: int, *, by: str, audit: AuditSink | None = None) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as session, session.begin():
        hold = session.get(LegalHold, pk)
        if hold is None or hold.released_at is not None:
            raise RetentionError("no such active legal hold")
        hold.released_at, hold.released_by = _now(), by
    (audit or LogSink()).record(AuditEvent(ev.APPLICATION_ACTIVITY, ev.UPDATE, user=by, route="retention:release", detail={"hold": pk}))


def set_study_facts(engine, study_uid: str, *, legal_basis: str | None = None, accessed: datetime | None = None) -> None:  # type: ignore[no-untyped-def]
    """Record a study's legal basis and/or its last access (the read path calls this)."""
    with Session(engine) as session, session.begin():
        row = session.get(StudyRetention, study_uid)
        if row is None:
            row = StudyRetention(study_uid=study_uid, legal_basis="")
            session.add(row)
        if legal_basis is not None:
            row.legal_basis = legal_basis[:64]
        if accessed is not None:
            row.last_access = accessed


def check_erasure_approvers(approvers: Sequence[Principal]) -> None:
    """A destruction outside the policy needs the security administrator and a second,
    different account (separation of duties); raises :class:`RetentionError`."""
    if not any(p.role == "security_admin" for p in approvers):
        raise RetentionError("erasure outside the retention policy needs the security administrator's approval")
    ids = {p.account_id for p in approvers}
    if len(ids) < 2 or len(ids) != len(approvers):
        raise RetentionError("erasure outside the retention policy needs a second approver (another account)")
    for p in approvers:
        if p.role not in SECOND_APPROVER_ROLES:
            raise RetentionError(f"role {p.role} cannot approve an erasure")


ERASURE_OPERATION = "erase_study"


def approvers_from_access(engine, study_uid: str, *, valid_hours: float = 72) -> list[Principal]:  # type: ignore[no-untyped-def]
    """The accounts that approved an ``erase_study`` request for this study through the
    access-control approvals (``safepacs.access.approvals``; the requester does not count):
    empty when no such request was approved within the last ``valid_hours`` (the access
    policy's ``approval_valid_hours``).  Pass them to :func:`destroy_study`."""
    from safepacs.access.models import Account, Approval, ApprovalVote

    since = _now() - timedelta(hours=valid_hours)
    with Session(engine) as session:
        approval = session.scalar(
            select(Approval).where(Approval.operation == ERASURE_OPERATION, Approval.target == study_uid,
                                   Approval.status == "approved", Approval.decided_at > since)
            .order_by(Approval.pk.desc()).limit(1))
        if approval is None:
            return []
        rows = session.execute(
            select(Account.pk, Account.username, ApprovalVote.role)
            .join(ApprovalVote, ApprovalVote.account_pk == Account.pk)
            .where(ApprovalVote.approval_pk == approval.pk, ApprovalVote.approve.is_(True),
                   Account.pk != approval.requested_by)
            .order_by(ApprovalVote.pk)).all()
    return [Principal(pk, name, role) for pk, name, role in rows]


# --- destruction ---------------------------------------------------------------------
def destroy_study(
    archive: object,
    study_uid: str,
    *,
    policy: str,
    signer: Signer,
    approvers: Sequence[Principal] = (),
    erasure: bool = False,
    audit: AuditSink | None = None,
) -> Destroyed:
    """Crypto-shred one study (see the module docstring) and certify it.  ``erasure``:
    outside the policy (a patient's erasure request): ``approvers`` must pass
    :func:`check_erasure_approvers`."""
    sink = audit or LogSink()
    if erasure:
        check_erasure_approvers(approvers)
    pk = _shred(archive, study_uid, policy=policy, approvers=approvers, erasure=erasure, sink=sink)
    rotation = kek_rotation.rotate(archive)
    return _certify(archive._engine, pk, rotation, signer, sink)  # type: ignore[attr-defined]


def _shred(
    a: object, study_uid: str, *, policy: str, approvers: Sequence[Principal], erasure: bool, sink: AuditSink
) -> int:
    """Steps 1, 3, 4: returns the row of the (not yet signed) certificate."""
    engine = a._engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        study = session.execute(
            select(Study.pk, Patient.pk, Patient.patient_id).join(Patient, Study.patient_pk == Patient.pk)
            .where(Study.study_uid == study_uid)
        ).first()
        if study is None:
            raise RetentionError("no such study")
        study_pk, patient_pk, pseudonym = study
        held_studies, held_patients = active_holds(session)
        if study_uid in held_studies or pseudonym in held_patients:
            sink.record(AuditEvent(ev.STUDY_DELETED, ev.DELETE, outcome=ev.MINOR_FAILURE, route="retention:destroy",
                                   study_uid=study_uid, patient=pseudonym, reason="under legal hold"))
            raise RetentionError("the study is under a legal hold")
        rows = session.execute(
            select(Instance.sop_uid, Instance.object_blob, Instance.delta_blob).join(Series, Instance.series_pk == Series.pk)
            .where(Series.study_pk == study_pk)).all()
        sops = [sop for sop, _, _ in rows]
        blobs = [n for _, obj, dlt in rows for n in (obj, dlt)]
        wrapped = session.scalar(select(DataKey.wrapped).where(DataKey.study_uid == study_uid))
        sealed = session.get(SealedStudy, study_uid)
    fingerprints = []
    if wrapped is not None:
        fingerprints.append(key_fingerprint(a._kek.unwrap(wrapped, b"study:" + study_uid.encode())))  # type: ignore[attr-defined]
    if sealed is not None:
        fingerprints.append(sealed.key_fingerprint)
    blob_hashes = []
    store = a._store  # type: ignore[attr-defined]
    for name in blobs:
        try:
            blob_hashes.append(hashlib.sha256(store.get(name)).hexdigest())
        except StoreError:
            blob_hashes.append("missing")
    # 1. the key
    with a._writer.begin() as conn:  # type: ignore[attr-defined]
        _secure_delete(conn)
        conn.execute(delete(DataKey).where(DataKey.study_uid == study_uid))
        conn.execute(delete(SealedShare).where(SealedShare.study_uid == study_uid))
        conn.execute(delete(SealedStudy).where(SealedStudy.study_uid == study_uid))
    a._forget_key(study_uid)  # type: ignore[attr-defined]
    recorder = a.__dict__.get("_last_access")
    if recorder is not None:
        recorder.forget(study_uid)
    vault = getattr(a, "_vault", None)
    if vault is not None:
        vault.close(study_uid)
    # 3. ciphertext (step 2, the KEK rotation, is the caller's: once for a whole run), and
    # rendered copies sealed under the render-cache key, which stays alive
    for name in blobs:
        store.delete(name)
    _purge_render_caches(a, sops)
    # 4. index rows
    with a._writer.begin() as conn:  # type: ignore[attr-defined]
        _secure_delete(conn)
        series = select(Series.pk).where(Series.study_pk == study_pk)
        conn.execute(delete(Instance).where(Instance.series_pk.in_(series)))
        conn.execute(delete(Series).where(Series.study_pk == study_pk))
        conn.execute(delete(Study).where(Study.pk == study_pk))
        conn.execute(delete(StudyRetention).where(StudyRetention.study_uid == study_uid))
        if not conn.scalar(select(func.count()).select_from(Study).where(Study.patient_pk == patient_pk)):
            conn.execute(delete(Identity).where(Identity.patient_pk == patient_pk))
            conn.execute(delete(Patient).where(Patient.pk == patient_pk))
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:  # old pages out of the write-ahead log
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    if hasattr(a, "_identities"):
        a._identities, a._identity_seen = None, 0  # type: ignore[attr-defined]  # identity cache
    doc = {
        "study_uid": study_uid, "patient": pseudonym, "policy": policy,
        "basis": "erasure" if erasure else "retention", "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "key_fingerprints": fingerprints, "blobs_deleted": blob_hashes,
        "approvers": [{"account": p.username, "role": p.role} for p in approvers] or [{"account": "policy", "role": "retention-policy"}],
    }
    with Session(engine) as session, session.begin():  # unsigned until the KEK is rotated
        row = DestructionCertificate(study_uid=study_uid, certificate=json.dumps(doc), signature="", created_at=_now())
        session.add(row)
        session.flush()
        return row.pk


def _purge_render_caches(a: object, sops: list[str]) -> None:
    """Rendered copies of the study: dropped from this process's cache, and every cache
    file of other processes (a server beside this CLI) is removed -- their names are keyed,
    so which are this study's cannot be told; those processes just miss their cache once."""
    import os

    masking = getattr(a, "masking", None)
    if masking is not None:
        for sop in sops:
            masking.invalidate(instance=sop)
    root = Path(a.settings.data_dir) / "cache"  # type: ignore[attr-defined]
    mine = f"render-{os.getpid()}"
    for folder in root.glob("render-*") if root.is_dir() else ():
        if folder.name != mine:
            for entry in folder.glob("*.rc"):
                entry.unlink(missing_ok=True)


def _certify(engine, pk: int, rotation: kek_rotation.Rotation, signer: Signer, sink: AuditSink) -> Destroyed:  # type: ignore[no-untyped-def]
    """Step 5: sign the certificate, saying whether older copies of the key are dead."""
    with Session(engine) as session:
        row = session.get(DestructionCertificate, pk)
        assert row is not None
        doc = json.loads(row.certificate)
    doc["kek_rotated"], doc["kek_note"] = rotation.rotated, rotation.reason
    body, signature = signer.sign(doc)
    with Session(engine) as session, session.begin():
        session.execute(update(DestructionCertificate).where(DestructionCertificate.pk == pk).values(certificate=body, signature=signature))
    erasure = doc["basis"] == "erasure"
    sink.record(AuditEvent(
        ev.STUDY_DELETED, ev.DELETE, user=",".join(a["account"] for a in doc["approvers"]),
        role="security_admin" if erasure else "", route="retention:destroy", study_uid=doc["study_uid"],
        patient=doc["patient"], purpose=doc["basis"], reason=doc["policy"],
        detail={"certificate": body, "signature": signature, "instances": len(doc["blobs_deleted"]) // 2},
    ))
    return Destroyed(doc["study_uid"], body, signature, rotation.rotated)


def certify_pending(archive: object, signer: Signer, sink: AuditSink, rotation: kek_rotation.Rotation) -> list[Destroyed]:
    """Sign every certificate a crash left unsigned (its study is already shredded)."""
    engine = archive._engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        pks = list(conn.scalars(select(DestructionCertificate.pk).where(DestructionCertificate.signature == "")))
    return [_certify(engine, pk, rotation, signer, sink) for pk in pks]


def _secure_delete(conn) -> None:  # type: ignore[no-untyped-def]
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA secure_delete=ON")  # deleted rows are overwritten


def certificates(engine, study_uid: str | None = None) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(certificate JSON, signature) of every destruction, oldest first."""
    stmt = select(DestructionCertificate.certificate, DestructionCertificate.signature).order_by(DestructionCertificate.pk)
    if study_uid is not None:
        stmt = stmt.where(DestructionCertificate.study_uid == study_uid)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(stmt)]  # type: ignore[misc]


# --- the scheduled job ---------------------------------------------------------------
@dataclass(frozen=True)
class RunReport:
    destroyed: list[str]
    held: list[str]
    failed: list[tuple[str, str]]  # (study UID, error class)
    kek_rotated: bool


def dates_kept(archive: object) -> bool:
    opts = archive.settings.options()  # type: ignore[attr-defined]
    return bool(getattr(opts, "retain_long_full_dates", False) or getattr(opts, "retain_long_modified_dates", False))


def current_plan(archive: object, *, now: datetime | None = None) -> list[planning.PlanEntry]:
    data_dir = archive.settings.data_dir  # type: ignore[attr-defined]
    return planning.plan(load_facts(archive._engine), policies.load(data_dir),  # type: ignore[attr-defined]
                         now=now or _now(), dates_kept=dates_kept(archive))


def run(archive: object, *, signer: Signer, audit: AuditSink | None = None, now: datetime | None = None) -> RunReport:
    """Destroy every expired study not under a hold; rotate the KEK once, then sign each
    certificate (it says whether older copies of its key are unopenable: ``kek_rotated``)."""
    sink = audit or LogSink()
    entries = current_plan(archive, now=now)
    destroyed, failed = [], []
    for entry in entries:
        if not entry.destroy:
            continue
        try:
            _shred(archive, entry.study_uid, policy=entry.policy, approvers=(), erasure=False, sink=sink)
            destroyed.append(entry.study_uid)
        except SafepacsError as exc:
            failed.append((entry.study_uid, exc.__class__.__name__))
    with archive._engine.connect() as conn:  # type: ignore[attr-defined]
        pending = conn.scalar(select(func.count()).select_from(DestructionCertificate).where(DestructionCertificate.signature == ""))
    rotation = kek_rotation.rotate(archive) if pending else kek_rotation.Rotation(False, "nothing destroyed")
    certify_pending(archive, signer, sink, rotation)
    rotated = rotation.rotated
    if destroyed:
        sink.record(AuditEvent(
            ev.APPLICATION_ACTIVITY, ev.EXECUTE, route="retention:run",
            detail={"destroyed": len(destroyed), "failed": len(failed), "kek_rotated": rotated}))
    return RunReport(destroyed, [e.study_uid for e in entries if e.expired and e.held], failed, rotated)
