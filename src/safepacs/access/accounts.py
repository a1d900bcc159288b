"""Account administration (the system administrator's job): create, list, disable, reset,
change a data role, API tokens for service accounts.  An administrator role is for life:
an account created with one can never be switched to another role, and no account gets a
role by any other path, so no account can ever hold two administrator roles."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from safepacs.access import passwords
from safepacs.access import tokens as tk
from safepacs.access.auth import Auth
from safepacs.access.context import Context
from safepacs.access.errors import AccessError, Conflict, Forbidden, NotFound
from safepacs.access.guard import require
from safepacs.access.models import Account, ApiToken
from safepacs.access.principal import ADMIN_ROLES, ROLES, Principal
from safepacs.audit.events import CREATE, DELETE, SECURITY_ALERT, UPDATE

USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")


@dataclass(frozen=True)
class AccountView:
    """What administrators see of an account (no hashes, no secrets)."""

    id: int
    username: str
    role: str
    disabled: bool
    locked: bool
    must_change_password: bool
    totp_enrolled: bool
    created_by: str


def view(acct: Account, now: datetime) -> AccountView:
    return AccountView(acct.pk, acct.username, acct.role, acct.disabled,
                       acct.locked_until is not None and acct.locked_until > now,
                       acct.must_change_password, acct.totp_confirmed, acct.created_by)


def new_account(s: Session, username: str, role: str, created_by: str, now: datetime) -> tuple[Account, str]:
    """Insert an account with a one-time password (returned; must be changed at first login)."""
    if not USERNAME.match(username):
        raise AccessError("username must be 2-64 characters: lower-case letters, digits, . _ -")
    if role not in ROLES:
        raise AccessError("unknown role")
    if s.scalar(select(Account.pk).where(Account.username == username)) is not None:
        raise Conflict("username already taken")
    password = passwords.one_time_password()
    acct = Account(username=username, role=role, password_hash=passwords.hash_password(password),
                   totp_confirmed=False, totp_last_step=0, must_change_password=True,
                   failed_count=0, disabled=False, created_by=created_by, created_at=now)
    s.add(acct)
    s.flush()
    return acct, password


class Accounts:
    def __init__(self, ctx: Context, auth: Auth) -> None:
        self.ctx = ctx
        self.auth = auth

    def create(self, who: Principal, username: str, role: str) -> tuple[AccountView, str]:
        route = "POST /api/accounts"
        require(self.ctx, who, "account.create", route=route)
        now = self.ctx.now()
        try:
            with Session(self.ctx.engine) as s, s.begin():
                acct, password = new_account(s, username, role, who.username, now)
                result = view(acct, now)
        except IntegrityError:
            raise Conflict("username already taken") from None
        self.ctx.emit(SECURITY_ALERT, CREATE, who=who, route=route, reason="account created",
                      detail={"account": result.id, "account_role": role})
        return result, password

    def list(self, who: Principal) -> list[AccountView]:
        require(self.ctx, who, "account.list", route="GET /api/accounts")
        now = self.ctx.now()
        with Session(self.ctx.engine) as s:
            return [view(a, now) for a in s.scalars(select(Account).order_by(Account.pk))]

    def _target(self, s: Session, account_id: int) -> Account:
        acct = s.get(Account, account_id)
        if acct is None:
            raise NotFound("no such account")
        return acct

    def set_disabled(self, who: Principal, account_id: int, disabled: bool = True) -> AccountView:
        route = "POST /api/accounts/{id}/disable"
        require(self.ctx, who, "account.disable", target_account=account_id, route=route)
        with Session(self.ctx.engine) as s, s.begin():
            acct = self._target(s, account_id)
            acct.disabled = disabled
            if disabled:
                self.auth.revoke_all(s, acct.pk)
                for tok in s.scalars(select(ApiToken).where(ApiToken.account_pk == acct.pk)):
                    tok.revoked = True
            result = view(acct, self.ctx.now())
        self.ctx.notify(account=account_id)  # caches of this account's access end now
        self.ctx.emit(SECURITY_ALERT, DELETE if disabled else UPDATE, who=who, route=route,
                      reason="account disabled" if disabled else "account enabled",
                      detail={"account": account_id})
        return result

    def reset(self, who: Principal, account_id: int) -> str:
        """New one-time password, second factor cleared, lock lifted, sessions ended."""
        route = "POST /api/accounts/{id}/reset"
        require(self.ctx, who, "account.reset", target_account=account_id, route=route)
        with Session(self.ctx.engine) as s, s.begin():
            acct = self._target(s, account_id)
            password = passwords.one_time_password()
            acct.password_hash = passwords.hash_password(password)
            acct.must_change_password = True
            acct.totp_sealed, acct.totp_confirmed, acct.totp_last_step = None, False, 0
            acct.failed_count, acct.locked_until = 0, None
            self.auth.revoke_all(s, acct.pk)
        self.ctx.notify(account=account_id)
        self.ctx.emit(SECURITY_ALERT, UPDATE, who=who, route=route,
                      reason="credentials reset", detail={"account": account_id})
        return password

    def set_role(self, who: Principal, account_id: int, role: str) -> AccountView:
        """Switch a data account to another data role.  Administrator roles are neither
        given nor taken away this way: an administrator is a new account."""
        route = "POST /api/accounts/{id}/role"
        require(self.ctx, who, "account.set_role", target_account=account_id, route=route)
        if role not in ROLES:
            raise AccessError("unknown role")
        with Session(self.ctx.engine) as s, s.begin():
            acct = self._target(s, account_id)
            refused = acct.role in ADMIN_ROLES or role in ADMIN_ROLES
            if not refused:
                acct.role = role
                acct.patient_pseudonym = None  # a link to a patient belongs to the patient role
                self.auth.revoke_all(s, acct.pk)
                result = view(acct, self.ctx.now())
        if refused:  # the alert after the transaction: its durable write needs the database
            self.ctx.emit(SECURITY_ALERT, UPDATE, outcome=4, who=who, route=route,
                          reason="administrator roles cannot be given or changed",
                          detail={"account": account_id})
            raise Forbidden("administrator roles cannot be given to or taken from an existing account")
        self.ctx.notify(account=account_id)
        self.ctx.emit(SECURITY_ALERT, UPDATE, who=who, route=route, reason="role changed",
                      detail={"account": account_id, "account_role": role})
        return result

    def create_api_token(self, who: Principal, account_id: int, name: str,
                         expires_at: datetime | None = None) -> str:
        """An API token for a ``service`` account; returned once, only its hash is kept."""
        route = "POST /api/accounts/{id}/tokens"
        require(self.ctx, who, "account.token", target_account=account_id, route=route)
        if not name or len(name) > 128:
            raise AccessError("token name must be 1..128 characters")
        token = tk.new_opaque(tk.API_TOKEN_PREFIX)
        with Session(self.ctx.engine) as s, s.begin():
            acct = self._target(s, account_id)
            if acct.role != "service":
                raise Forbidden("API tokens are for service accounts only")
            s.add(ApiToken(account_pk=acct.pk, name=name, token_hash=tk.digest(token),
                           revoked=False, created_at=self.ctx.now(), expires_at=expires_at))
        self.ctx.emit(SECURITY_ALERT, CREATE, who=who, route=route, reason="API token created",
                      detail={"account": account_id})
        return token

    def link_oidc(self, who: Principal, account_id: int, subject: str) -> None:
        """Map an OpenID Connect identity (the configured claim's value) to a data account."""
        route = "POST /api/accounts/{id}/oidc"
        require(self.ctx, who, "account.oidc", target_account=account_id, route=route)
        if not subject or len(subject) > 255:
            raise AccessError("subject must be 1..255 characters")
        try:
            with Session(self.ctx.engine) as s, s.begin():
                acct = self._target(s, account_id)
                if acct.role in ADMIN_ROLES:
                    raise Forbidden("administrators log in with password and second factor only")
                acct.oidc_subject = subject
        except IntegrityError:
            raise Conflict("this identity is linked to another account") from None
        self.ctx.emit(SECURITY_ALERT, UPDATE, who=who, route=route, reason="single sign-on identity linked",
                      detail={"account": account_id})
