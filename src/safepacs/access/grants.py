"""Data access administration (the security administrator's job): care relationships,
research projects and their cohorts, third-party and service grants, patient links.

Every grant names an account of the matching data role, so an administrator can never give
data access to an administrator (themselves included); ending a grant sets its end to now,
keeping the history for the audit trail."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from safepacs.access.context import Context
from safepacs.access.errors import AccessError, Conflict, Forbidden, NotFound
from safepacs.access.guard import require
from safepacs.access.levels import grantable
from safepacs.access.models import (
    Account,
    CareRelationship,
    CohortEntry,
    Grant,
    GrantStudy,
    Project,
    ProjectMember,
)
from safepacs.access.principal import CLINICAL_ROLES, Principal
from safepacs.audit.events import CREATE, DELETE, SECURITY_ALERT, UPDATE

UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")
PSEUDONYM = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
CODE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class Created:
    id: int
    starts_at: datetime
    ends_at: datetime


def _uid(value: str) -> str:
    if not UID.match(value or "") or len(value) > 64:
        raise AccessError("malformed study UID")
    return value


def _pseudonym(value: str) -> str:
    if not PSEUDONYM.match(value or ""):
        raise AccessError("malformed patient pseudonym")
    return value


def _window(now: datetime, starts_at: datetime | None, ends_at: datetime | None,
            default: timedelta) -> tuple[datetime, datetime]:
    start = starts_at or now
    end = ends_at or start + default
    if end <= start:
        raise AccessError("the end must be after the start")
    return start, end


class Grants:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _account(self, s: Session, account_id: int, roles: tuple[str, ...]) -> Account:
        acct = s.get(Account, account_id)
        if acct is None:
            raise NotFound("no such account")
        if acct.role not in roles:
            raise Forbidden(f"this grant is only for accounts of role {' or '.join(roles)}")
        return acct

    def _level(self, name: str, *, project: bool) -> str:
        """A built-in or site level by name, checked against the registry as it is now:
        unknown names, and levels not for this kind of access, are refused."""
        with self.ctx.engine.connect() as conn:
            return grantable(conn, name, project=project).name

    def _emit(self, who: Principal, action: str, route: str, reason: str, **detail: str | int) -> None:
        self.ctx.emit(SECURITY_ALERT, action, who=who, route=route, reason=reason, detail=detail)

    # --- patients -------------------------------------------------------------------------
    def link_patient(self, who: Principal, account_id: int, pseudonym: str) -> None:
        """Link a ``patient`` account to their pseudonym (after identity was checked)."""
        route = "POST /api/patients/link"
        require(self.ctx, who, "patient.link", target_account=account_id, route=route)
        with Session(self.ctx.engine) as s, s.begin():
            acct = self._account(s, account_id, ("patient",))
            acct.patient_pseudonym = _pseudonym(pseudonym)
        self._emit(who, UPDATE, route, "patient account linked", account=account_id)

    # --- care relationships ---------------------------------------------------------------
    def add_care(self, who: Principal, account_id: int, patient_id: str, *,
                 starts_at: datetime | None = None, ends_at: datetime | None = None) -> Created:
        route = "POST /api/care"
        require(self.ctx, who, "care.manage", target_account=account_id, route=route)
        now = self.ctx.now()
        start, end = _window(now, starts_at, ends_at, timedelta(days=30))
        with Session(self.ctx.engine) as s, s.begin():
            self._account(s, account_id, CLINICAL_ROLES)
            row = CareRelationship(account_pk=account_id, patient_id=_pseudonym(patient_id),
                                   starts_at=start, ends_at=end, created_by=who.username, created_at=now)
            s.add(row)
            s.flush()
            result = Created(row.pk, start, end)
        self.ctx.emit(SECURITY_ALERT, CREATE, who=who, route=route, reason="care relationship added",
                      patient=patient_id, detail={"account": account_id, "care": result.id})
        return result

    def end_care(self, who: Principal, care_id: int) -> None:
        route = "POST /api/care/{id}/end"
        with Session(self.ctx.engine) as s, s.begin():
            row = s.get(CareRelationship, care_id)
            require(self.ctx, who, "care.manage", route=route,
                    target_account=row.account_pk if row is not None else None)
            if row is None:
                raise NotFound("no such care relationship")
            row.ends_at = min(row.ends_at, self.ctx.now())
            account = row.account_pk
        self._emit(who, DELETE, route, "care relationship ended", care=care_id)
        self.ctx.notify(account=account)

    # --- projects -------------------------------------------------------------------------
    def create_project(self, who: Principal, code: str, purpose: str, expires_at: datetime, *,
                       level: str | None = None, starts_at: datetime | None = None) -> Created:
        route = "POST /api/projects"
        require(self.ctx, who, "project.manage", route=route)
        level = self._level(level or self.ctx.policy.default("project_level"), project=True)
        if not CODE.match(code or ""):
            raise AccessError("project code must be 1-64 letters, digits, . _ -")
        if not purpose or len(purpose) > 256:
            raise AccessError("purpose must be 1..256 characters")
        now = self.ctx.now()
        start, end = _window(now, starts_at, expires_at, timedelta(days=1))
        try:
            with Session(self.ctx.engine) as s, s.begin():
                row = Project(code=code, purpose=purpose, level=level, starts_at=start,
                              expires_at=end, created_by=who.username, created_at=now)
                s.add(row)
                s.flush()
                result = Created(row.pk, start, end)
        except IntegrityError:
            raise Conflict("project code already exists") from None
        self.ctx.emit(SECURITY_ALERT, CREATE, who=who, route=route, reason="project created",
                      purpose=f"research:{code}", level=level, detail={"project": result.id})
        return result

    def _project(self, s: Session, project_id: int) -> Project:
        row = s.get(Project, project_id)
        if row is None:
            raise NotFound("no such project")
        return row

    def add_member(self, who: Principal, project_id: int, account_id: int) -> None:
        route = "POST /api/projects/{id}/members"
        require(self.ctx, who, "project.manage", target_account=account_id, route=route)
        try:
            with Session(self.ctx.engine) as s, s.begin():
                self._project(s, project_id)
                self._account(s, account_id, ("researcher",))
                s.add(ProjectMember(project_pk=project_id, account_pk=account_id))
        except IntegrityError:
            raise Conflict("already a member") from None
        self._emit(who, CREATE, route, "project member added", project=project_id, account=account_id)

    def add_cohort(self, who: Principal, project_id: int, *, study_uids: Sequence[str] = (),
                   patient_ids: Sequence[str] = ()) -> int:
        route = "POST /api/projects/{id}/cohort"
        require(self.ctx, who, "project.manage", route=route)
        rows = [CohortEntry(project_pk=project_id, study_uid=_uid(u)) for u in study_uids]
        rows += [CohortEntry(project_pk=project_id, patient_id=_pseudonym(p)) for p in patient_ids]
        with Session(self.ctx.engine) as s, s.begin():
            self._project(s, project_id)
            s.add_all(rows)
        self._emit(who, CREATE, route, "project cohort extended", project=project_id, entries=len(rows))
        return len(rows)

    def end_project(self, who: Principal, project_id: int) -> None:
        route = "POST /api/projects/{id}/end"
        require(self.ctx, who, "project.manage", route=route)
        with Session(self.ctx.engine) as s, s.begin():
            row = self._project(s, project_id)
            row.expires_at = min(row.expires_at, self.ctx.now())
            code = row.code
        self._emit(who, DELETE, route, "project ended", project=project_id)
        self.ctx.notify(project=code)

    # --- grants ---------------------------------------------------------------------------
    def create_grant(self, who: Principal, account_id: int, study_uids: list[str], *,
                     level: str | None = None, starts_at: datetime | None = None,
                     ends_at: datetime | None = None) -> Created:
        """A third party's time-boxed access to named studies (default level anonymised)."""
        route = "POST /api/grants"
        require(self.ctx, who, "grant.manage", target_account=account_id, route=route)
        level = self._level(level or self.ctx.policy.default("grant_level"), project=False)
        if not study_uids:
            raise AccessError("a grant names at least one study")
        uids = sorted({_uid(u) for u in study_uids})
        return self._grant(who, route, account_id, ("third_party",), level, uids, starts_at, ends_at,
                           timedelta(days=7))

    def create_service_grant(self, who: Principal, account_id: int, *,
                             starts_at: datetime | None = None, ends_at: datetime | None = None) -> Created:
        """A service account's access to every stored study as stored (de-identified)."""
        route = "POST /api/grants/service"
        require(self.ctx, who, "grant.manage", target_account=account_id, route=route)
        return self._grant(who, route, account_id, ("service",), "deidentified", None, starts_at,
                           ends_at, timedelta(days=365))

    def _grant(self, who: Principal, route: str, account_id: int, roles: tuple[str, ...], level: str,
               uids: list[str] | None, starts_at: datetime | None, ends_at: datetime | None,
               default: timedelta) -> Created:
        now = self.ctx.now()
        start, end = _window(now, starts_at, ends_at, default)
        with Session(self.ctx.engine) as s, s.begin():
            self._account(s, account_id, roles)
            row = Grant(account_pk=account_id, level=level, all_studies=uids is None, starts_at=start,
                        ends_at=end, created_by=who.username, created_at=now)
            s.add(row)
            s.flush()
            s.add_all(GrantStudy(grant_pk=row.pk, study_uid=u) for u in uids or ())
            result = Created(row.pk, start, end)
        self.ctx.emit(SECURITY_ALERT, CREATE, who=who, route=route, reason="grant created", level=level,
                      detail={"account": account_id, "grant": result.id, "studies": len(uids or ())})
        return result

    def revoke_grant(self, who: Principal, grant_id: int) -> None:
        route = "POST /api/grants/{id}/revoke"
        with Session(self.ctx.engine) as s, s.begin():
            row = s.get(Grant, grant_id)
            require(self.ctx, who, "grant.manage", route=route,
                    target_account=row.account_pk if row is not None else None)
            if row is None:
                raise NotFound("no such grant")
            row.ends_at = min(row.ends_at, self.ctx.now())
        self._emit(who, DELETE, route, "grant revoked", grant=grant_id)
        self.ctx.notify(grant=grant_id)

    def list_for(self, who: Principal, account_id: int) -> dict[str, list[dict]]:
        """The access an account holds (security administrator's review)."""
        require(self.ctx, who, "access.list", route="GET /api/accounts/{id}/access")
        with Session(self.ctx.engine) as s:
            care = [dict(id=c.pk, patient=c.patient_id, starts_at=c.starts_at.isoformat(),
                         ends_at=c.ends_at.isoformat())
                    for c in s.scalars(select(CareRelationship).where(CareRelationship.account_pk == account_id))]
            grants = [dict(id=g.pk, level=g.level, all_studies=g.all_studies,
                           starts_at=g.starts_at.isoformat(), ends_at=g.ends_at.isoformat())
                      for g in s.scalars(select(Grant).where(Grant.account_pk == account_id))]
            projects = [dict(id=p.pk, code=p.code, level=p.level, expires_at=p.expires_at.isoformat())
                        for p in s.scalars(select(Project).join(ProjectMember, ProjectMember.project_pk == Project.pk)
                                           .where(ProjectMember.account_pk == account_id))]
        return {"care": care, "grants": grants, "projects": projects}
