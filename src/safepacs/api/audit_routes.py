"""HTTP routes of the audit trail: the patient's access log and appeals, the auditor's
queue, alerts, signed heads and proofs.

The router does not authenticate: the caller passes two FastAPI dependencies.
``auditor_principal`` returns the security auditor (anything with ``username`` and ``role``)
or raises 401/403; ``patient_principal`` returns a :class:`PatientCaller` naming the
patient by pseudonym, or raises.  ``alerts_principal`` (default: the auditor's) admits the
security administrator to the alerts too.  No route deletes anything.

No ``from __future__ import annotations`` here: FastAPI must see the dependency aliases
defined inside :func:`audit_router` as real objects, not strings.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, Field

from safepacs.audit.anomaly import RulesError
from safepacs.audit.heads import public_pem
from safepacs.audit.patient import AppealError
from safepacs.audit.service import AuditService


@dataclass(frozen=True)
class PatientCaller:
    pseudonym: str  # the patient's pseudonym in the index
    username: str = ""
    address: str = ""


class AppealBody(BaseModel):
    statement: str = Field(default="", max_length=4000)


class AppealUpdate(BaseModel):
    status: str
    note: str = Field(default="", max_length=4000)


class AlertUpdate(BaseModel):
    status: str


def audit_router(
    service: AuditService,
    *,
    auditor_principal: Callable[..., Any],
    patient_principal: Callable[..., PatientCaller],
    alerts_principal: Callable[..., Any] | None = None,
    public_key: Any = None,
) -> APIRouter:
    """The ``/api/me`` (patient) and ``/api/audit`` (auditor) routes."""
    router = APIRouter(prefix="/api")
    Auditor = Annotated[Any, Depends(auditor_principal)]
    AlertReader = Annotated[Any, Depends(alerts_principal or auditor_principal)]
    Me = Annotated[PatientCaller, Depends(patient_principal)]

    # --- the patient ---------------------------------------------------------------------
    @router.get("/me/access-log", tags=["patient"])
    def my_access_log(me: Me) -> list[dict]:
        """Every access to my studies: when, organisation/department, role, level, purpose."""
        return [line.to_dict() for line in service.access_log(me.pseudonym)]

    @router.post("/me/access-log/{index}/appeal", tags=["patient"], status_code=201)
    def appeal(index: int, body: AppealBody, me: Me) -> dict:
        """Appeal one line; the auditor gets it with the line's proof."""
        try:
            return service.appeals.file(me.pseudonym, index, body.statement, user=me.username,
                                        address=me.address).for_patient()
        except AppealError as exc:
            raise HTTPException(404 if "no such line" in str(exc) else 409, str(exc)) from None

    @router.get("/me/appeals", tags=["patient"])
    def my_appeals(me: Me) -> list[dict]:
        return [a.for_patient() for a in service.appeals.for_patient(me.pseudonym)]

    # --- the auditor ---------------------------------------------------------------------
    @router.get("/audit/appeals", tags=["audit"])
    def appeal_queue(who: Auditor, status: str | None = None) -> list[dict]:
        """Appeals with their events and proofs (default: those not resolved)."""
        return [a.to_dict() for a in service.appeals.queue(status)]

    @router.post("/audit/appeals/{appeal_id}", tags=["audit"])
    def update_appeal(appeal_id: int, body: AppealUpdate, who: Auditor) -> dict:
        try:
            return service.appeals.update(appeal_id, body.status, body.note, user=getattr(who, "username", ""),
                                          role=getattr(who, "role", "")).to_dict()
        except AppealError as exc:
            raise HTTPException(404 if "no such" in str(exc) else 409, str(exc)) from None

    @router.get("/audit/alerts", tags=["audit"])
    def alerts(who: AlertReader, status: str | None = None, rule: str | None = None) -> list[dict]:
        return service.alerts.list(status=status, rule=rule)

    @router.post("/audit/alerts/{alert_id}", tags=["audit"])
    def update_alert(alert_id: int, body: AlertUpdate, who: AlertReader) -> dict:
        try:
            service.alerts.set_status(alert_id, body.status)
        except RulesError as exc:
            raise HTTPException(404 if "no such" in str(exc) else 400, str(exc)) from None
        return {"id": alert_id, "status": body.status}

    @router.get("/audit/entries", tags=["audit"])
    def entries(who: Auditor, start: Annotated[int, Query(ge=0)] = 0,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
        return service.entries(start, limit)

    @router.get("/audit/heads/latest", tags=["audit"])
    def latest_head(who: Auditor) -> dict:
        head = service.reader.latest_head()
        if head is None:
            raise HTTPException(404, "the trail is empty")
        return head.to_dict()

    @router.get("/audit/proofs/inclusion", tags=["audit"])
    def inclusion(who: Auditor, index: Annotated[int, Query(ge=0)], size: int | None = None) -> dict:
        try:
            return service.reader.inclusion_proof(index, size).to_dict()
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from None

    @router.get("/audit/proofs/consistency", tags=["audit"])
    def consistency(who: Auditor, first: Annotated[int, Query(ge=0)], second: Annotated[int, Query(ge=0)]) -> dict:
        try:
            proof = service.reader.consistency_proof(first, second)
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from None
        return {"first": first, "second": second, "proof": [p.hex() for p in proof]}

    if public_key is not None:
        @router.get("/audit/public-key", tags=["audit"])
        def public_key_pem(who: Auditor) -> Response:
            return Response(public_pem(public_key), media_type="application/x-pem-file")

    return router
