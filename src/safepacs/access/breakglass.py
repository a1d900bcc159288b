"""Break-glass: a clinician's emergency access to one patient without a care relationship.
It needs re-authentication and a reason from the policy's list, lasts a fixed time (24 h by
default), raises a security alert at once and waits in a queue until the security
administrator reviews it.  The free-text justification is stored, never logged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from safepacs.access.auth import Auth
from safepacs.access.context import Context
from safepacs.access.errors import AccessError, Forbidden, NotFound
from safepacs.access.guard import require
from safepacs.access.models import BreakGlass
from safepacs.access.principal import Principal
from safepacs.audit.events import CREATE, EXECUTE, MINOR_FAILURE, SECURITY_ALERT, UPDATE
from safepacs.index.models import Patient, Study

OUTCOMES = ("justified", "unjustified")


@dataclass(frozen=True)
class Emergency:
    id: int
    account: str
    patient: str  # pseudonym
    reason_code: str
    justification: str
    starts_at: datetime
    ends_at: datetime
    reviewed: bool
    review_outcome: str | None


class BreakGlassDesk:
    def __init__(self, ctx: Context, auth: Auth) -> None:
        self.ctx = ctx
        self.auth = auth

    def start(self, who: Principal, study_uid: str, reason_code: str, justification: str, *,
              password: str, code: str) -> Emergency:
        route = "POST /api/break-glass"
        require(self.ctx, who, "break_glass.start", route=route)
        if reason_code not in self.ctx.policy.break_glass_reasons:
            raise AccessError("unknown reason code")
        if not justification or len(justification) > 2000:
            raise AccessError("a justification of 1..2000 characters is required")
        if not self.auth.reauthenticate(who, password, code):
            self.ctx.emit(SECURITY_ALERT, EXECUTE, outcome=MINOR_FAILURE, who=who, route=route,
                          reason="break-glass re-authentication failed")
            raise Forbidden("re-authentication failed")
        now = self.ctx.now()
        hours = int(self.ctx.policy.default("break_glass_hours"))
        with Session(self.ctx.engine) as s:  # read first: the alert below must not wait on
            # the write transaction (its durable audit write needs the database)
            patient = s.scalar(select(Patient.patient_id).join(Study, Study.patient_pk == Patient.pk)
                               .where(Study.study_uid == study_uid))
        if patient is None:
            self.ctx.emit(SECURITY_ALERT, EXECUTE, outcome=MINOR_FAILURE, who=who, route=route,
                          reason="break-glass for an unknown study")
            raise NotFound("not found")
        with Session(self.ctx.engine) as s, s.begin():
            row = BreakGlass(account_pk=who.account_id, patient_id=patient, reason_code=reason_code,
                             justification=justification, starts_at=now,
                             ends_at=now + timedelta(hours=hours), reviewed=False)
            s.add(row)
            s.flush()
            result = self._view(row, who.username)
        self.ctx.emit(SECURITY_ALERT, CREATE, who=who, route=route, patient=patient,
                      study_uid=study_uid, purpose="emergency",
                      reason="break-glass access started: review required",
                      detail={"break_glass": result.id, "reason_code": reason_code,
                              "ends_at": result.ends_at.isoformat()})
        return result

    @staticmethod
    def _view(row: BreakGlass, username: str) -> Emergency:
        return Emergency(row.pk, username, row.patient_id, row.reason_code, row.justification,
                         row.starts_at, row.ends_at, row.reviewed, row.review_outcome)

    def queue(self, who: Principal) -> list[Emergency]:
        """Break-glass sessions not yet reviewed, oldest first."""
        require(self.ctx, who, "break_glass.review", route="GET /api/break-glass/queue")
        from safepacs.access.models import Account

        with Session(self.ctx.engine) as s:
            rows = s.execute(select(BreakGlass, Account.username)
                             .join(Account, Account.pk == BreakGlass.account_pk)
                             .where(BreakGlass.reviewed.is_(False)).order_by(BreakGlass.pk)).all()
            return [self._view(r, name) for r, name in rows]

    def review(self, who: Principal, emergency_id: int, outcome: str, *, end_now: bool = False) -> None:
        route = "POST /api/break-glass/{id}/review"
        require(self.ctx, who, "break_glass.review", route=route)
        if outcome not in OUTCOMES:
            raise AccessError("outcome must be justified or unjustified")
        now = self.ctx.now()
        with Session(self.ctx.engine) as s, s.begin():
            row = s.get(BreakGlass, emergency_id)
            if row is None:
                raise NotFound("no such break-glass session")
            if row.account_pk == who.account_id:
                raise Forbidden("no one reviews their own break-glass access")
            row.reviewed, row.reviewer, row.review_outcome, row.reviewed_at = True, who.username, outcome, now
            if end_now or outcome == "unjustified":
                row.ends_at = min(row.ends_at, now)
            patient = row.patient_id
        self.ctx.emit(SECURITY_ALERT, UPDATE, who=who, route=route, patient=patient,
                      reason=f"break-glass reviewed: {outcome}", detail={"break_glass": emergency_id})
