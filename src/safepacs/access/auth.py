"""Logging in and staying logged in: password + TOTP, JWT access tokens, refresh-token
rotation with reuse detection, logout, password change, TOTP enrolment, lockout and the
per-address rate limit.  Every outcome is an audit event; no secret ever is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from safepacs.access import passwords, totp
from safepacs.access import tokens as tk
from safepacs.access.context import Context
from safepacs.access.errors import AccessError, Forbidden, TooManyAttempts, Unauthenticated
from safepacs.access.models import Account, ApiToken, LoginAttempt, RefreshToken, RevokedSession
from safepacs.access.principal import Principal
from safepacs.audit.events import (
    EXECUTE,
    MINOR_FAILURE,
    SECURITY_ALERT,
    UPDATE,
    USER_AUTHENTICATION,
)

BAD_LOGIN = "invalid username, password or code, or account locked"


@dataclass(frozen=True)
class LoginResult:
    """``status`` "ok" carries access + refresh tokens; "password_change_required" and
    "totp_enrolment_required" carry a setup token good only for those two steps."""

    status: str
    access_token: str = ""
    refresh_token: str = ""
    expires_in: int = 0
    setup_token: str = ""
    role: str = ""

    def as_dict(self) -> dict:
        body: dict = {"status": self.status}
        if self.status == "ok":
            body.update(access_token=self.access_token, refresh_token=self.refresh_token,
                        token_type="Bearer", expires_in=self.expires_in, role=self.role)
        else:
            body.update(setup_token=self.setup_token, token_type="Bearer")
        return body


class Auth:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.policy = ctx.policy

    # --- login --------------------------------------------------------------------------
    def login(self, username: str, password: str, code: str = "", *, address: str = "") -> LoginResult:
        now = self.ctx.now()
        route = "POST /api/auth/login"
        locked = False
        try:  # its own transaction, so that the refusal is audited after it
            with Session(self.ctx.engine) as s, s.begin():
                self._rate_limit(s, address, now)
        except TooManyAttempts:
            self.ctx.emit(USER_AUTHENTICATION, EXECUTE, outcome=MINOR_FAILURE, user="unknown",
                          address=address, route=route, reason="too many failed logins from this address")
            raise
        with Session(self.ctx.engine) as s, s.begin():
            acct = s.scalar(select(Account).where(Account.username == username)) if username else None
            ok = passwords.verify_password(acct.password_hash if acct else None, password)
            why = None
            if acct is None:
                why = "unknown account"
            elif acct.disabled:
                why = "account disabled"
            elif acct.locked_until is not None and acct.locked_until > now:
                why = "account locked"
            elif not ok:
                why = "wrong password"
            elif acct.totp_confirmed and not self._take_code(acct, code, now):
                why = "wrong or missing second factor"
            if why is not None:
                s.add(LoginAttempt(address=address[:64], at=now))
                if acct is not None and why in ("wrong password", "wrong or missing second factor"):
                    locked = self._count_failure(acct, now, address)
                user = acct.username if acct is not None else "unknown"
                role = acct.role if acct is not None else ""
                failed = True
            else:
                failed = False
                acct.failed_count, acct.locked_until = 0, None
                result = self._after_password(s, acct, address, via="password", now=now)
        if failed:
            # after the commit: a durable audit write (an alert) waits for the database,
            # which an open SQLite write transaction of this thread would hold forever
            self.ctx.emit(USER_AUTHENTICATION, EXECUTE, outcome=MINOR_FAILURE, user=user,
                          role=role, address=address, route=route, reason=why)
            if locked:
                self.ctx.emit(SECURITY_ALERT, EXECUTE, outcome=MINOR_FAILURE, user=user, role=role,
                              address=address, route=route,
                              reason="account locked after repeated failed logins")
            raise Unauthenticated(BAD_LOGIN)
        return result

    def _after_password(self, s: Session, acct: Account, address: str, *, via: str,
                        now: datetime) -> LoginResult:
        route = "POST /api/auth/login" if via == "password" else "GET /api/auth/oidc/callback"
        if acct.must_change_password and via == "password":
            status = "password_change_required"
        elif self.policy.needs_totp(acct.role) and not acct.totp_confirmed and via == "password":
            status = "totp_enrolment_required"
        else:
            status = "ok"
        if status != "ok":
            token, _ = tk.issue_access(
                self.ctx.keys.jwt, account_id=acct.pk, username=acct.username, role=acct.role,
                family=tk.new_family(), scope="setup", via=via, now=now,
                minutes=int(self.policy.default("setup_token_minutes")))
            self.ctx.emit(USER_AUTHENTICATION, EXECUTE, user=acct.username, role=acct.role,
                          address=address, route=route, reason=status)
            return LoginResult(status, setup_token=token, role=acct.role)
        family = tk.new_family()
        result = self._issue(s, acct, family, via, now)
        self.ctx.emit(USER_AUTHENTICATION, EXECUTE, user=acct.username, role=acct.role,
                      address=address, route=route, detail={"session": family, "via": via})
        return result

    def _issue(self, s: Session, acct: Account, family: str, via: str, now: datetime) -> LoginResult:
        minutes = int(self.policy.default("access_token_minutes"))
        access, _ = tk.issue_access(self.ctx.keys.jwt, account_id=acct.pk, username=acct.username,
                                    role=acct.role, family=family, scope="full", via=via, now=now,
                                    minutes=minutes)
        refresh = tk.new_opaque(tk.REFRESH_PREFIX)
        hours = int(self.policy.default("refresh_token_hours"))
        s.add(RefreshToken(account_pk=acct.pk, family=family, token_hash=tk.digest(refresh),
                           used=False, revoked=False, created_at=now,
                           expires_at=now + timedelta(hours=hours)))
        return LoginResult("ok", access, refresh, minutes * 60, role=acct.role)

    def _rate_limit(self, s: Session, address: str, now: datetime) -> None:
        window = now - timedelta(minutes=int(self.policy.default("address_window_minutes")))
        s.execute(delete(LoginAttempt).where(LoginAttempt.at < window))
        count = s.scalar(select(func.count()).select_from(LoginAttempt).where(
            LoginAttempt.address == address[:64], LoginAttempt.at >= window))
        if count >= int(self.policy.default("address_failures_per_window")):
            raise TooManyAttempts("too many failed logins from this address; try again later")

    def _count_failure(self, acct: Account, now: datetime, address: str) -> bool:
        """Count a failed login; True when it locks the account (the caller emits the alert
        after its transaction)."""
        acct.failed_count += 1
        if acct.failed_count >= int(self.policy.default("lockout_failures")):
            acct.locked_until = now + timedelta(minutes=int(self.policy.default("lockout_minutes")))
            acct.failed_count = 0
            return True
        return False

    def _take_code(self, acct: Account, code: str, now: datetime) -> bool:
        if acct.totp_sealed is None:
            return False
        secret = self.ctx.keys.open_value(acct.totp_sealed, b"totp:%d" % acct.pk).decode()
        step = totp.matching_step(secret, code, now, acct.totp_last_step)
        if step is None:
            return False
        acct.totp_last_step = step
        return True

    # --- tokens -------------------------------------------------------------------------
    def authenticate(self, token: str, *, address: str = "", setup: bool = False) -> Principal | None:
        """The caller of a bearer token, or None (audited).  ``setup``: accept only a setup
        token's (or a full token's) holder for the password / TOTP steps."""
        if not token or len(token) > 4096:
            return None
        now = self.ctx.now()
        if token.startswith(tk.API_TOKEN_PREFIX):
            return self._api_token(token, address, now) if not setup else None
        try:
            claims = tk.verify_access(self.ctx.keys.jwt, token, now)
        except tk.TokenInvalid as exc:
            return self._refuse(str(exc), address)
        if claims.scope == "setup" and not setup:
            return self._refuse("setup token used outside the password/TOTP steps", address)
        with Session(self.ctx.engine) as s:
            acct = s.get(Account, claims.account_id)
            revoked = s.get(RevokedSession, claims.family) is not None
        if acct is None or acct.disabled or acct.role != claims.role or acct.username != claims.username:
            return self._refuse("token of a changed or disabled account", address)
        if revoked:
            return self._refuse("token of a revoked session", address)
        if claims.scope == "full" and acct.must_change_password:
            return self._refuse("password change required", address)
        return Principal(acct.pk, acct.username, acct.role, claims.jti, address, claims.via)

    def _api_token(self, token: str, address: str, now: datetime) -> Principal | None:
        with Session(self.ctx.engine) as s:
            row = s.execute(
                select(ApiToken, Account).join(Account, Account.pk == ApiToken.account_pk)
                .where(ApiToken.token_hash == tk.digest(token))).first()
        if row is None:
            return None  # perhaps an archive token: the caller may try its own table
        tok, acct = row
        if tok.revoked or acct.disabled or (tok.expires_at is not None and tok.expires_at <= now):
            return self._refuse("revoked, expired or disabled API token", address)
        return Principal(acct.pk, acct.username, acct.role, f"token:{tok.pk}", address, "api-token")

    def _refuse(self, why: str, address: str) -> None:
        self.ctx.emit(USER_AUTHENTICATION, EXECUTE, outcome=MINOR_FAILURE, user="unknown",
                      address=address, reason=why)
        return None

    def refresh(self, refresh_token: str, *, address: str = "") -> LoginResult:
        """Rotate: the presented token is used up and a new pair issued.  A token presented
        twice means it was stolen (or the client is broken): the whole session is revoked."""
        now = self.ctx.now()
        route = "POST /api/auth/refresh"
        outcome: LoginResult | None = None
        why = ""
        events: list[dict] = []  # emitted after the commit (see login)
        with Session(self.ctx.engine) as s, s.begin():
            row = s.scalar(select(RefreshToken).where(RefreshToken.token_hash == tk.digest(refresh_token or "")))
            acct = s.get(Account, row.account_pk) if row is not None else None
            if row is None or acct is None:
                why = "unknown refresh token"
            elif row.used or row.revoked:
                if row.used and not row.revoked:
                    self._revoke_family(s, row.family, now)
                    events.append(dict(event_id=SECURITY_ALERT, outcome=MINOR_FAILURE, user=acct.username,
                                       role=acct.role, reason="refresh token replayed: session revoked",
                                       detail={"session": row.family}))
                why = "refresh token already used or revoked"
            elif row.expires_at <= now:
                why = "refresh token expired"
            elif acct.disabled or acct.must_change_password:
                why = "account disabled or password change required"
            elif s.get(RevokedSession, row.family) is not None:
                why = "session revoked"
            else:
                row.used = True
                outcome = self._issue(s, acct, row.family, "password", now)
                events.append(dict(event_id=USER_AUTHENTICATION, user=acct.username, role=acct.role,
                                   reason="token refreshed", detail={"session": row.family}))
        for e in events:
            self.ctx.emit(e.pop("event_id"), EXECUTE, address=address, route=route, **e)
        if outcome is None:
            self.ctx.emit(USER_AUTHENTICATION, EXECUTE, outcome=MINOR_FAILURE, user="unknown",
                          address=address, route=route, reason=why)
            raise Unauthenticated("invalid refresh token")
        return outcome

    def _revoke_family(self, s: Session, family: str, now: datetime) -> None:
        s.execute(update(RefreshToken).where(RefreshToken.family == family).values(revoked=True))
        if s.get(RevokedSession, family) is None:
            s.add(RevokedSession(family=family, revoked_at=now))

    def logout(self, who: Principal) -> None:
        """End the caller's session: its refresh tokens and access tokens stop working."""
        family = who.session_id.split(":", 1)[0]
        if who.via == "api-token" or not family:
            raise Forbidden("API tokens are revoked by the system administrator")
        with Session(self.ctx.engine) as s, s.begin():
            self._revoke_family(s, family, self.ctx.now())
        self.ctx.emit(USER_AUTHENTICATION, EXECUTE, who=who, route="POST /api/auth/logout",
                      reason="logout")

    def revoke_all(self, s: Session, account_pk: int) -> None:
        now = self.ctx.now()
        families = s.scalars(select(RefreshToken.family).where(
            RefreshToken.account_pk == account_pk).distinct()).all()
        for family in families:
            self._revoke_family(s, family, now)

    # --- password and second factor ------------------------------------------------------
    def change_password(self, who: Principal, old: str, new: str) -> None:
        """Needs the current password; ends every session of the account."""
        with Session(self.ctx.engine) as s, s.begin():
            acct = s.get(Account, who.account_id)
            if acct is None or not passwords.verify_password(acct.password_hash, old):
                why = "wrong current password"
            elif problem := passwords.password_problem(
                    new, min_length=int(self.policy.default("password_min_length"))):
                why = problem
            elif new == old:
                why = "the new password must differ from the old one"
            else:
                why = ""
                acct.password_hash = passwords.hash_password(new)
                acct.must_change_password = False
                self.revoke_all(s, acct.pk)
        outcome = MINOR_FAILURE if why else 0
        self.ctx.emit(USER_AUTHENTICATION, UPDATE, outcome=outcome, who=who,
                      route="POST /api/auth/password", reason=why or "password changed")
        if why == "wrong current password":
            raise Forbidden(why)
        if why:
            raise AccessError(why)

    def enrol_totp(self, who: Principal) -> str:
        """A new (pending) TOTP secret; returns its provisioning URI, shown this once."""
        secret = totp.new_secret()
        with Session(self.ctx.engine) as s, s.begin():
            acct = s.get(Account, who.account_id)
            if acct is None:
                raise Unauthenticated("unknown account")
            if acct.totp_confirmed:
                raise Forbidden("a second factor is already enrolled; ask the system administrator to reset it")
            acct.totp_sealed = self.ctx.keys.seal_value(secret.encode(), b"totp:%d" % acct.pk)
            acct.totp_last_step = 0
        self.ctx.emit(USER_AUTHENTICATION, UPDATE, who=who, route="POST /api/auth/totp",
                      reason="second factor enrolment started")
        return totp.provisioning_uri(secret, who.username)

    def confirm_totp(self, who: Principal, code: str) -> None:
        now = self.ctx.now()
        with Session(self.ctx.engine) as s, s.begin():
            acct = s.get(Account, who.account_id)
            ok = acct is not None and not acct.totp_confirmed and self._take_code(acct, code, now)
            if ok:
                acct.totp_confirmed = True
        self.ctx.emit(USER_AUTHENTICATION, UPDATE, outcome=0 if ok else MINOR_FAILURE, who=who,
                      route="POST /api/auth/totp", reason="second factor confirmed" if ok else "wrong code")
        if not ok:
            raise Forbidden("wrong code")

    def reauthenticate(self, who: Principal, password: str, code: str) -> bool:
        """Password and (where the account has one) a fresh TOTP code: for break-glass."""
        now = self.ctx.now()
        with Session(self.ctx.engine) as s, s.begin():
            acct = s.get(Account, who.account_id)
            if acct is None or acct.disabled or not passwords.verify_password(acct.password_hash, password):
                return False
            if self.policy.needs_totp(acct.role) or acct.totp_confirmed:
                return acct.totp_confirmed and self._take_code(acct, code, now)
            return True

    def session_for(self, account_pk: int, *, via: str, address: str) -> LoginResult:
        """A session for an account authenticated elsewhere (OpenID Connect)."""
        now = self.ctx.now()
        with Session(self.ctx.engine) as s, s.begin():
            acct = s.get(Account, account_pk)
            if acct is None or acct.disabled:
                raise Unauthenticated(BAD_LOGIN)
            return self._after_password(s, acct, address, via=via, now=now)
