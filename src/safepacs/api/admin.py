"""The access and administration API under ``/api``: login and session routes, account
administration (system administrator), data-access administration, break-glass review and
approvals (security administrator), break-glass for clinicians.

Routes translate HTTP to ``AccessControl`` calls; every permission check lives there (and in
the policy file), so this module decides nothing itself.  Tokens are read from the
``Authorization`` header only: a request carrying a token-like query parameter is refused
with 400 and audited.  Errors are ``HTTPException``s with messages free of PHI and secrets.
"""


from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from safepacs.access.errors import AccessError
from safepacs.access.principal import ROLES, Principal
from safepacs.access.service import AccessControl
from safepacs.api.tokens import token_in_query
from safepacs.audit.events import EXECUTE, MINOR_FAILURE, SECURITY_ALERT

T = TypeVar("T")
Role = Literal[ROLES]  # type: ignore[valid-type]
#: a built-in or site level; checked against the level registry when the grant is made
Level = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
LevelName = Annotated[str, PathParam(min_length=1, max_length=32)]
Text = Annotated[str, Field(min_length=1, max_length=256)]
Uid = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)+$", max_length=64)]
Pseudonym = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class LoginBody(BaseModel):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    totp: Annotated[str, Field(max_length=16)] = ""


class RefreshBody(BaseModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=512)]


class PasswordBody(BaseModel):
    old_password: Annotated[str, Field(min_length=1, max_length=1024)]
    new_password: Annotated[str, Field(min_length=1, max_length=1024)]


class TotpBody(BaseModel):
    code: Annotated[str, Field(max_length=16)] = ""


class AccountBody(BaseModel):
    username: Annotated[str, Field(min_length=2, max_length=64)]
    role: Role


class RoleBody(BaseModel):
    role: Role


class NameBody(BaseModel):
    name: Text
    expires_at: datetime | None = None


class SubjectBody(BaseModel):
    subject: Annotated[str, Field(min_length=1, max_length=255)]


class ProfileBody(BaseModel):
    """A reader's profile for the anomaly rules; name and address are stored only as keyed
    hashes.  Omitted fields are cleared."""

    family_name: Annotated[str, Field(max_length=512)] | None = None
    address: Annotated[str, Field(max_length=512)] | None = None
    own_patient: Pseudonym | None = None
    department: Annotated[str, Field(max_length=128)] | None = None  # shown to patients


class LinkBody(BaseModel):
    account_id: int
    patient: Pseudonym


class CareBody(BaseModel):
    account_id: int
    patient: Pseudonym
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class ProjectBody(BaseModel):
    code: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    purpose: Text
    expires_at: datetime
    starts_at: datetime | None = None
    level: Level | None = None


class MemberBody(BaseModel):
    account_id: int


class CohortBody(BaseModel):
    study_uids: Annotated[list[Uid], Field(max_length=10000)] = []
    patients: Annotated[list[Pseudonym], Field(max_length=10000)] = []


class GrantBody(BaseModel):
    account_id: int
    study_uids: Annotated[list[Uid], Field(min_length=1, max_length=10000)]
    level: Level | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class ServiceGrantBody(BaseModel):
    account_id: int
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class BreakGlassBody(BaseModel):
    study_uid: Uid
    reason_code: Annotated[str, Field(min_length=1, max_length=64)]
    justification: Annotated[str, Field(min_length=1, max_length=2000)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    totp: Annotated[str, Field(max_length=16)] = ""


class ReviewBody(BaseModel):
    outcome: Literal["justified", "unjustified"]
    end_now: bool = False


class ApprovalBody(BaseModel):
    operation: Literal["bulk_reidentify", "export_identified", "erase_study"]
    target: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]


def _naive(when: datetime | None) -> datetime | None:
    """Timestamps from clients become naive UTC, as stored."""
    if when is None or when.tzinfo is None:
        return when
    from datetime import UTC

    return when.astimezone(UTC).replace(tzinfo=None)


def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except AccessError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        raise HTTPException(exc.status, str(exc), headers=headers) from None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def admin_router(access: AccessControl) -> APIRouter:
    """The ``/api`` routes; the caller mounts them with ``app.include_router``."""
    router = APIRouter(prefix="/api")
    ctx = access.ctx

    def address(request: Request) -> str:
        return request.client.host if request.client else ""

    def no_token_in_url(request: Request) -> None:
        if token_in_query(request.query_params):
            ctx.emit(SECURITY_ALERT, EXECUTE, outcome=MINOR_FAILURE, user="unknown",
                     address=address(request), route=f"{request.method} {request.url.path}",
                     reason="token in the query string refused")
            raise HTTPException(400, "tokens are accepted in the Authorization header only")

    def bearer(request: Request) -> str:
        no_token_in_url(request)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, "authentication required (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})
        return token.strip()

    def caller(request: Request) -> Principal:
        who = access.auth.authenticate(bearer(request), address=address(request))
        if who is None:
            raise HTTPException(401, "invalid or expired token",
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return who

    def setup_caller(request: Request) -> Principal:
        who = access.auth.authenticate(bearer(request), address=address(request), setup=True)
        if who is None:
            raise HTTPException(401, "invalid or expired token",
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return who

    Who = Annotated[Principal, Depends(caller)]
    SetupWho = Annotated[Principal, Depends(setup_caller)]
    guard = [Depends(no_token_in_url)]

    # --- authentication -------------------------------------------------------------------
    @router.post("/auth/login", dependencies=guard, tags=["auth"])
    def login(body: LoginBody, request: Request) -> dict:
        """Password (+ TOTP code): access and refresh tokens, or a setup token when the
        password must be changed or a second factor enrolled first."""
        return _run(access.login, body.username, body.password, body.totp,
                    address=address(request)).as_dict()

    @router.post("/auth/refresh", dependencies=guard, tags=["auth"])
    def refresh(body: RefreshBody, request: Request) -> dict:
        """Rotate the refresh token; presenting a used one revokes the whole session."""
        return _run(access.refresh, body.refresh_token, address=address(request)).as_dict()

    @router.post("/auth/logout", tags=["auth"])
    def logout(who: Who) -> dict:
        _run(access.logout, who)
        return {"status": "logged out"}

    @router.get("/auth/me", tags=["auth"])
    def me(who: Who) -> dict:
        return {"account_id": who.account_id, "username": who.username, "role": who.role,
                "via": who.via}

    @router.post("/auth/password", tags=["auth"])
    def password(body: PasswordBody, who: SetupWho) -> dict:
        """Change the password (setup tokens allowed); every session of the account ends."""
        _run(access.auth.change_password, who, body.old_password, body.new_password)
        return {"status": "password changed; log in again"}

    @router.post("/auth/totp", tags=["auth"])
    def enrol_totp(body: TotpBody, who: SetupWho) -> dict:
        """Without a code: start enrolment, returning the provisioning URI once.  With a
        code from the authenticator: confirm it."""
        if not body.code:
            return {"provisioning_uri": _run(access.auth.enrol_totp, who)}
        _run(access.auth.confirm_totp, who, body.code)
        return {"status": "second factor enrolled; log in again"}

    @router.get("/auth/oidc/login", dependencies=guard, tags=["auth"])
    def oidc_login() -> RedirectResponse:
        if access.oidc is None:
            raise HTTPException(404, "single sign-on is not configured")
        return RedirectResponse(_run(access.oidc.start), status_code=302)

    @router.get("/auth/oidc/callback", dependencies=guard, tags=["auth"])
    def oidc_callback(request: Request, code: Annotated[str, Query(max_length=2048)] = "",
                      state: Annotated[str, Query(max_length=256)] = "") -> dict:
        if access.oidc is None:
            raise HTTPException(404, "single sign-on is not configured")
        if not code or not state:
            raise HTTPException(400, "code and state are required")
        return _run(access.oidc.finish, code, state, address=address(request)).as_dict()

    # --- accounts (system administrator) ----------------------------------------------------
    @router.get("/accounts", tags=["accounts"])
    def list_accounts(who: Who) -> list[dict]:
        return _jsonable(_run(access.accounts.list, who))

    @router.post("/accounts", status_code=201, tags=["accounts"])
    def create_account(body: AccountBody, who: Who) -> dict:
        """A new account with one role and a one-time password (shown once)."""
        view, otp = _run(access.accounts.create, who, body.username, body.role)
        return {"account": _jsonable(view), "one_time_password": otp}

    @router.post("/accounts/{account_id}/disable", tags=["accounts"])
    def disable(account_id: int, who: Who) -> dict:
        return _jsonable(_run(access.accounts.set_disabled, who, account_id, True))

    @router.post("/accounts/{account_id}/enable", tags=["accounts"])
    def enable(account_id: int, who: Who) -> dict:
        return _jsonable(_run(access.accounts.set_disabled, who, account_id, False))

    @router.post("/accounts/{account_id}/reset", tags=["accounts"])
    def reset(account_id: int, who: Who) -> dict:
        return {"one_time_password": _run(access.accounts.reset, who, account_id)}

    @router.post("/accounts/{account_id}/role", tags=["accounts"])
    def set_role(account_id: int, body: RoleBody, who: Who) -> dict:
        return _jsonable(_run(access.accounts.set_role, who, account_id, body.role))

    @router.post("/accounts/{account_id}/tokens", status_code=201, tags=["accounts"])
    def api_token(account_id: int, body: NameBody, who: Who) -> dict:
        token = _run(access.accounts.create_api_token, who, account_id, body.name, _naive(body.expires_at))
        return {"token": token}

    @router.post("/accounts/{account_id}/oidc", tags=["accounts"])
    def link_oidc(account_id: int, body: SubjectBody, who: Who) -> dict:
        _run(access.accounts.link_oidc, who, account_id, body.subject)
        return {"status": "linked"}

    @router.post("/accounts/{account_id}/profile", tags=["accounts"])
    def set_profile(account_id: int, body: ProfileBody, who: Who) -> dict:
        p = _run(access.profiles.set, who, account_id, family_name=body.family_name,
                 address=body.address, own_patient=body.own_patient, department=body.department)
        return {"family_name": p.family is not None, "address": p.address is not None,
                "own_patient": p.own_patient is not None, "department": p.department}

    # --- data access (security administrator) ----------------------------------------------
    @router.get("/accounts/{account_id}/access", tags=["access"])
    def account_access(account_id: int, who: Who) -> dict:
        return _run(access.grants.list_for, who, account_id)

    @router.post("/patients/link", tags=["access"])
    def link_patient(body: LinkBody, who: Who) -> dict:
        _run(access.grants.link_patient, who, body.account_id, body.patient)
        return {"status": "linked"}

    @router.post("/care", status_code=201, tags=["access"])
    def add_care(body: CareBody, who: Who) -> dict:
        return _jsonable(_run(access.grants.add_care, who, body.account_id, body.patient,
                              starts_at=_naive(body.starts_at), ends_at=_naive(body.ends_at)))

    @router.post("/care/{care_id}/end", tags=["access"])
    def end_care(care_id: int, who: Who) -> dict:
        _run(access.grants.end_care, who, care_id)
        return {"status": "ended"}

    @router.post("/projects", status_code=201, tags=["access"])
    def create_project(body: ProjectBody, who: Who) -> dict:
        return _jsonable(_run(access.grants.create_project, who, body.code, body.purpose,
                              _naive(body.expires_at), level=body.level,
                              starts_at=_naive(body.starts_at)))

    @router.post("/projects/{project_id}/members", tags=["access"])
    def add_member(project_id: int, body: MemberBody, who: Who) -> dict:
        _run(access.grants.add_member, who, project_id, body.account_id)
        return {"status": "added"}

    @router.post("/projects/{project_id}/cohort", tags=["access"])
    def add_cohort(project_id: int, body: CohortBody, who: Who) -> dict:
        n = _run(access.grants.add_cohort, who, project_id, study_uids=body.study_uids,
                 patient_ids=body.patients)
        return {"added": n}

    @router.post("/projects/{project_id}/end", tags=["access"])
    def end_project(project_id: int, who: Who) -> dict:
        _run(access.grants.end_project, who, project_id)
        return {"status": "ended"}

    @router.post("/grants", status_code=201, tags=["access"])
    def create_grant(body: GrantBody, who: Who) -> dict:
        return _jsonable(_run(access.grants.create_grant, who, body.account_id, body.study_uids,
                              level=body.level, starts_at=_naive(body.starts_at),
                              ends_at=_naive(body.ends_at)))

    @router.post("/grants/service", status_code=201, tags=["access"])
    def service_grant(body: ServiceGrantBody, who: Who) -> dict:
        return _jsonable(_run(access.grants.create_service_grant, who, body.account_id,
                              starts_at=_naive(body.starts_at), ends_at=_naive(body.ends_at)))

    @router.post("/grants/{grant_id}/revoke", tags=["access"])
    def revoke_grant(grant_id: int, who: Who) -> dict:
        _run(access.grants.revoke_grant, who, grant_id)
        return {"status": "revoked"}

    @router.get("/policy", tags=["access"])
    def show_policy(who: Who) -> dict:
        from safepacs.access.guard import require

        _run(require, ctx, who, "policy.show", route="GET /api/policy")
        return access.policy.raw

    # --- site access levels (security administrator; the admins read them) -----------------
    @router.get("/levels", tags=["levels"])
    def list_levels(who: Who) -> list[dict]:
        """Built-in and site levels with their definitions (site ones: version, digest)."""
        return _run(access.levels.list, who)

    @router.get("/levels/{name}/history", tags=["levels"])
    def level_history(name: LevelName, who: Who) -> list[dict]:
        """Every change of one site level: who, when, the definition before and after."""
        return _run(access.levels.history, who, name)

    @router.put("/levels/{name}", tags=["levels"])
    def put_level(name: LevelName, definition: Annotated[dict[str, Any], Body()], who: Who) -> dict:
        """Define or replace a site level (the ``levels.json`` shape of one level); new
        requests are rendered by it.  Built-in names are refused."""
        return _run(access.levels.put, who, name, definition)

    @router.delete("/levels/{name}", tags=["levels"])
    def delete_level(name: LevelName, who: Who) -> dict:
        """Delete a site level that no active project or grant uses (409 otherwise)."""
        return _run(access.levels.delete, who, name)

    # --- break-glass ------------------------------------------------------------------------
    @router.post("/break-glass", status_code=201, tags=["break-glass"])
    def break_glass(body: BreakGlassBody, who: Who) -> dict:
        """Emergency access to the patient of one study: re-authenticate, give a reason."""
        e = _run(access.break_glass.start, who, body.study_uid, body.reason_code, body.justification,
                 password=body.password, code=body.totp)
        return {"id": e.id, "starts_at": e.starts_at.isoformat(), "ends_at": e.ends_at.isoformat()}

    @router.get("/break-glass/queue", tags=["break-glass"])
    def break_glass_queue(who: Who) -> list[dict]:
        return _jsonable(_run(access.break_glass.queue, who))

    @router.post("/break-glass/{emergency_id}/review", tags=["break-glass"])
    def review(emergency_id: int, body: ReviewBody, who: Who) -> dict:
        _run(access.break_glass.review, who, emergency_id, body.outcome, end_now=body.end_now)
        return {"status": "reviewed"}

    # --- approvals --------------------------------------------------------------------------
    @router.get("/approvals", tags=["approvals"])
    def approvals(who: Who) -> list[dict]:
        return _jsonable(_run(access.approvals.pending, who))

    @router.post("/approvals", status_code=201, tags=["approvals"])
    def request_approval(body: ApprovalBody, who: Who) -> dict:
        return _jsonable(_run(access.approvals.request, who, body.operation, body.target))

    @router.get("/approvals/{approval_id}", tags=["approvals"])
    def approval_status(approval_id: int, who: Who) -> dict:
        return _jsonable(_run(access.approvals.status, who, approval_id))

    @router.post("/approvals/{approval_id}/approve", tags=["approvals"])
    def approve(approval_id: int, who: Who) -> dict:
        return _jsonable(_run(access.approvals.vote, who, approval_id, True))

    @router.post("/approvals/{approval_id}/deny", tags=["approvals"])
    def deny(approval_id: int, who: Who) -> dict:
        return _jsonable(_run(access.approvals.vote, who, approval_id, False))

    return router
