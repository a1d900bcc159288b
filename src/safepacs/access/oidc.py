"""OpenID Connect login (relying-party side, authorisation code flow with PKCE and nonce).

authlib builds the authorisation request and the PKCE challenge; the ID token is verified
with joserfc (the JOSE library authlib now delegates to) against the provider's published
JWKS: signature, issuer, audience, expiry and nonce.  The chosen claim (``sub`` by default)
must match an account an administrator linked beforehand: nothing is created on the fly,
administrators never log in this way, and roles that require a second factor need the
provider to assert one (``amr``) unless the site declares that its provider enforces MFA."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session

from safepacs.access.auth import Auth, LoginResult
from safepacs.access.context import Context
from safepacs.access.errors import AccessError, Unauthenticated
from safepacs.access.models import Account
from safepacs.access.principal import ADMIN_ROLES
from safepacs.audit.events import EXECUTE, MINOR_FAILURE, USER_AUTHENTICATION

MFA_METHODS = {"mfa", "otp", "hwk", "swk", "sms", "fpt", "face", "sc"}
ALGORITHMS = ["RS256", "ES256", "PS256", "EdDSA"]


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    claim: str = "sub"
    scope: str = "openid profile"
    trust_idp_mfa: bool = False
    timeout: float = 10.0


class OidcLogin:
    def __init__(self, config: OidcConfig, ctx: Context, auth: Auth) -> None:
        self.config = config
        self.ctx = ctx
        self.auth = auth
        self._meta: dict[str, Any] | None = None
        self._pending: dict[str, tuple[str, str, float]] = {}  # state -> nonce, verifier, deadline
        self._lock = threading.Lock()

    def _get(self, url: str) -> dict[str, Any]:
        try:
            resp = httpx.get(url, timeout=self.config.timeout)
            resp.raise_for_status()
            return resp.json()
        except (httpx.HTTPError, ValueError):
            raise AccessError("the identity provider cannot be reached") from None

    def metadata(self) -> dict[str, Any]:
        if self._meta is None:
            meta = self._get(self.config.issuer.rstrip("/") + "/.well-known/openid-configuration")
            if meta.get("issuer") != self.config.issuer:
                raise AccessError("the identity provider's metadata names another issuer")
            self._meta = meta
        return self._meta

    def start(self) -> str:
        """The URL to send the browser to; state, nonce and PKCE verifier are kept here."""
        meta = self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(48)
        with self._lock:
            now = time.monotonic()
            self._pending = {k: v for k, v in self._pending.items() if v[2] > now}
            self._pending[state] = (nonce, verifier, now + 600)
        return prepare_grant_uri(
            meta["authorization_endpoint"], self.config.client_id, "code", self.config.redirect_uri,
            self.config.scope, state=state, nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier), code_challenge_method="S256")

    def finish(self, code: str, state: str, *, address: str = "") -> LoginResult:
        with self._lock:
            pending = self._pending.pop(state, None)
        if pending is None or pending[2] < time.monotonic():
            return self._refuse("unknown or expired login state", address)
        nonce, verifier, _ = pending
        meta = self.metadata()
        try:
            resp = httpx.post(
                meta["token_endpoint"], timeout=self.config.timeout,
                data={"grant_type": "authorization_code", "code": code,
                      "redirect_uri": self.config.redirect_uri, "code_verifier": verifier},
                auth=(self.config.client_id, self.config.client_secret))
            resp.raise_for_status()
            id_token = resp.json()["id_token"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return self._refuse("code exchange failed", address)
        claims = self._verify(id_token, nonce, address)
        subject = claims.get(self.config.claim)
        if not isinstance(subject, str) or not subject:
            return self._refuse("ID token lacks the mapped claim", address)
        with Session(self.ctx.engine) as s:
            acct = s.scalar(select(Account).where(Account.oidc_subject == subject))
        if acct is None or acct.disabled:
            return self._refuse("no active account is linked to this identity", address)
        if acct.role in ADMIN_ROLES:
            return self._refuse("administrators log in with password and second factor", address)
        amr = claims.get("amr") or []
        if (self.ctx.policy.needs_totp(acct.role) and not self.config.trust_idp_mfa
                and not (isinstance(amr, list) and MFA_METHODS & set(map(str, amr)))):
            return self._refuse("the identity provider did not assert a second factor", address)
        return self.auth.session_for(acct.pk, via="oidc", address=address)

    def _verify(self, id_token: str, nonce: str, address: str) -> dict[str, Any]:
        keys = KeySet.import_key_set(self._get(self.metadata()["jwks_uri"]))
        now = int(self.ctx.now().replace(tzinfo=UTC).timestamp())
        registry = jwt.JWTClaimsRegistry(
            now=now, leeway=30, iss={"essential": True, "value": self.config.issuer},
            aud={"essential": True, "value": self.config.client_id},
            exp={"essential": True}, nonce={"essential": True, "value": nonce})
        try:
            token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            registry.validate(token.claims)
        except (JoseError, ValueError, TypeError):
            self._refuse("ID token failed verification", address)
        return dict(token.claims)

    def _refuse(self, why: str, address: str) -> LoginResult:
        self.ctx.emit(USER_AUTHENTICATION, EXECUTE, outcome=MINOR_FAILURE, user="unknown",
                      address=address, route="GET /api/auth/oidc/callback", reason=why,
                      detail={"via": "oidc"})
        raise Unauthenticated("single sign-on failed")
