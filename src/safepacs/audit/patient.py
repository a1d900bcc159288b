"""The patient's view of the trail: who touched their studies, and appeals against a line.

A patient is known here only by pseudonym.  Their lines are the entries naming that
pseudonym or one of their studies (found in the index), re-checked against the entry itself
so a doctored lookup column cannot show someone else's access.  Reader names appear only
when the site's policy says so; by default a line shows role, organisation and department.
An appeal carries the entry, its inclusion proof and the signed head, so whoever reviews it
can check the line was in the trail, unchanged, when the patient saw it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from safepacs.audit import events as ev
from safepacs.audit.events import AuditEvent, AuditSink, LogSink
from safepacs.audit.models import AuditAppeal, AuditEntry
from safepacs.audit.proofs import TrailReader
from safepacs.errors import SafepacsError
from safepacs.index.models import Patient, Study

STATUSES = ("open", "under-review", "resolved")
MAX_STATEMENT = 4000
_HIDDEN = {ev.SECURITY_ALERT}  # internal monitoring, reviewed by the auditor instead


class AppealError(SafepacsError):
    """The appeal cannot be filed or changed (the message holds no PHI)."""


@dataclass(frozen=True)
class PatientLogPolicy:
    show_reader_names: bool = False  # site policy; default: role, organisation, department only
    include_refused: bool = True  # refused attempts are accesses the patient should know of


@dataclass(frozen=True)
class AccessLine:
    index: int
    time: str
    event: str
    outcome: str  # "allowed" | "refused"
    role: str
    organisation: str
    department: str
    level: str
    purpose: str
    reader: str  # empty unless the policy shows names

    def to_dict(self) -> dict:
        return asdict(self)


def patient_studies(engine: Engine, pseudonym: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(
            select(Study.study_uid).join(Patient, Patient.pk == Study.patient_pk).where(Patient.patient_id == pseudonym)
        ).scalars())


def _line(index: int, e: AuditEvent, policy: PatientLogPolicy) -> AccessLine:
    return AccessLine(
        index=index,
        time=e.time,
        event=ev.EVENT_NAMES.get(e.event_id, e.event_id),
        outcome="allowed" if e.allowed else "refused",
        role=e.role,
        organisation=str(e.detail.get("organisation", "")),
        department=str(e.detail.get("department", "")),
        level=e.level,
        purpose=e.purpose,
        reader=e.user if policy.show_reader_names else "",
    )


def _touches(e: AuditEvent, pseudonym: str, studies: set[str]) -> bool:
    return bool(pseudonym) and (e.patient == pseudonym or (e.study_uid != "" and e.study_uid in studies))


def access_log(engine: Engine, pseudonym: str, policy: PatientLogPolicy = PatientLogPolicy()) -> list[AccessLine]:
    """Every recorded access to this patient's studies, oldest first."""
    if not pseudonym:
        return []
    studies = set(patient_studies(engine, pseudonym))
    cond = AuditEntry.patient == pseudonym
    if studies:
        cond = or_(cond, AuditEntry.study_uid.in_(sorted(studies)))
    lines = []
    with engine.connect() as conn:
        for idx, data in conn.execute(select(AuditEntry.idx, AuditEntry.entry).where(cond).order_by(AuditEntry.idx)):
            e = AuditEvent.from_dict(json.loads(bytes(data)))
            if e.event_id in _HIDDEN or not _touches(e, pseudonym, studies):
                continue
            if not e.allowed and not policy.include_refused:
                continue
            lines.append(_line(idx, e, policy))
    return lines


@dataclass(frozen=True)
class Appeal:
    id: int
    patient: str
    index: int
    statement: str
    status: str
    note: str
    created_at: str
    updated_at: str
    evidence: dict  # {"event": ..., "proof": InclusionProof.to_dict()}

    def for_patient(self) -> dict:
        """What the patient sees: their own line, the status and the auditor's answer."""
        return {"id": self.id, "index": self.index, "statement": self.statement, "status": self.status,
                "note": self.note, "created_at": self.created_at, "updated_at": self.updated_at}

    def to_dict(self) -> dict:
        return asdict(self)


def _appeal(row: AuditAppeal) -> Appeal:
    return Appeal(row.pk, row.patient, row.entry_idx, row.statement, row.status, row.note,
                  row.created_at.isoformat(), row.updated_at.isoformat(), json.loads(row.proof))


class Appeals:
    """Filing (patient), following (patient) and handling (security auditor) appeals."""

    def __init__(self, engine: Engine, *, audit: AuditSink | None = None, reader: TrailReader | None = None,
                 clock=lambda: datetime.now(UTC).replace(tzinfo=None)) -> None:  # type: ignore[no-untyped-def]
        self._engine = engine
        self._audit = audit or LogSink()
        self._reader = reader or TrailReader(engine)
        self._now = clock

    def file(self, pseudonym: str, index: int, statement: str, *, user: str = "", address: str = "") -> Appeal:
        data = self._reader.entry(index)
        if data is None:
            raise AppealError("no such line in your access log")
        event = AuditEvent.from_dict(json.loads(data))
        if event.event_id in _HIDDEN or not _touches(event, pseudonym, set(patient_studies(self._engine, pseudonym))):
            raise AppealError("no such line in your access log")
        try:
            proof = self._reader.inclusion_proof(index)
        except ValueError:
            raise AppealError("that line is not yet sealed in the trail; try again in a moment") from None
        if not proof.verifies():
            raise AppealError("the trail cannot prove that line; the auditor has been alerted")
        now = self._now()
        row = AuditAppeal(patient=pseudonym, entry_idx=index, statement=statement[:MAX_STATEMENT],
                          proof=json.dumps({"event": event.to_dict(), "proof": proof.to_dict()}),
                          status="open", note="", created_at=now, updated_at=now)
        with Session(self._engine) as s, s.begin():
            s.add(row)
            s.flush()
            appeal = _appeal(row)
        self._audit.record(AuditEvent(ev.AUDIT_LOG_USED, ev.CREATE, user=user, role="patient", address=address,
                                      route="patient:appeal", patient=pseudonym, reason="appeal filed",
                                      detail={"appeal": appeal.id, "entry": index}))
        return appeal

    def for_patient(self, pseudonym: str) -> list[Appeal]:
        with Session(self._engine) as s:
            rows = s.scalars(select(AuditAppeal).where(AuditAppeal.patient == pseudonym).order_by(AuditAppeal.pk))
            return [_appeal(r) for r in rows]

    def queue(self, status: str | None = None) -> list[Appeal]:
        """The auditor's queue (default: everything not resolved)."""
        with Session(self._engine) as s:
            q = select(AuditAppeal).order_by(AuditAppeal.pk)
            q = q.where(AuditAppeal.status == status) if status else q.where(AuditAppeal.status != "resolved")
            return [_appeal(r) for r in s.scalars(q)]

    def update(self, appeal_id: int, status: str, note: str = "", *, user: str = "", role: str = "") -> Appeal:
        if status not in STATUSES:
            raise AppealError(f"status must be one of {', '.join(STATUSES)}")
        with Session(self._engine) as s, s.begin():
            row = s.get(AuditAppeal, appeal_id)
            if row is None:
                raise AppealError("no such appeal")
            if row.status == "resolved":
                raise AppealError("a resolved appeal is closed")
            row.status, row.updated_at = status, self._now()
            if note:
                row.note = note[:MAX_STATEMENT]
            appeal = _appeal(row)
        self._audit.record(AuditEvent(ev.AUDIT_LOG_USED, ev.UPDATE, user=user, role=role, route="audit:appeal",
                                      patient=appeal.patient, reason=f"appeal {status}",
                                      detail={"appeal": appeal.id, "entry": appeal.index}))
        return appeal
