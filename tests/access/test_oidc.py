"""OpenID Connect login against a minimal provider served over real HTTP on loopback.

The provider is built here (discovery, authorize, token, JWKS; RS256 ID tokens signed with
joserfc, PKCE checked with authlib's S256 helper): no OIDC provider package installs offline.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from safepacs.access.context import utc_now
from safepacs.access.oidc import OidcConfig
from safepacs.access.service import AccessControl
from safepacs.api.admin import admin_router

from .http import free_port, serving

CLIENT_ID, CLIENT_SECRET = "safepacs-rp", "rp-secret-for-tests"


def provider_app(issuer: str, behaviour: dict) -> FastAPI:
    app = FastAPI()
    key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
    rogue = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256"})
    codes: dict[str, dict] = {}

    @app.get("/.well-known/openid-configuration")
    def discovery() -> dict:
        return {"issuer": issuer, "authorization_endpoint": issuer + "/authorize",
                "token_endpoint": issuer + "/token", "jwks_uri": issuer + "/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"]}

    @app.get("/jwks")
    def jwks() -> dict:
        return KeySet([key]).as_dict(private=False)

    @app.get("/authorize")
    def authorize(request: Request) -> RedirectResponse:
        q = request.query_params
        assert q["client_id"] == CLIENT_ID and q["response_type"] == "code"
        assert q["code_challenge_method"] == "S256"
        code = generate_token(24)
        codes[code] = {"nonce": q["nonce"], "challenge": q["code_challenge"], "redirect": q["redirect_uri"]}
        return RedirectResponse(f"{q['redirect_uri']}?code={code}&state={q['state']}", status_code=302)

    @app.post("/token")
    def token(request: Request, grant_type: str = Form(), code: str = Form(),
              redirect_uri: str = Form(), code_verifier: str = Form()) -> JSONResponse:
        auth = request.headers.get("authorization", "")
        expected = httpx.BasicAuth(CLIENT_ID, CLIENT_SECRET)._auth_header
        entry = codes.pop(code, None)
        if (auth != expected or entry is None or grant_type != "authorization_code"
                or entry["redirect"] != redirect_uri
                or create_s256_code_challenge(code_verifier) != entry["challenge"]):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        claims = {"iss": issuer, "aud": behaviour.get("aud", CLIENT_ID), "sub": behaviour["sub"],
                  "nonce": behaviour.get("nonce", entry["nonce"]), "iat": now,
                  "exp": now + behaviour.get("ttl", 300)}
        if "amr" in behaviour:
            claims["amr"] = behaviour["amr"]
        signer = rogue if behaviour.get("rogue") else key
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, signer)
        return JSONResponse({"access_token": "idp-at", "token_type": "Bearer", "id_token": id_token})

    return app


@pytest.fixture
def idp():
    behaviour: dict = {"sub": "sso-doc"}
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    with serving(provider_app(issuer, behaviour), port=port):
        yield issuer, behaviour


@pytest.fixture
def sso(engine, tmp_path, sink, clock, idp):
    issuer, _ = idp
    clock.now = utc_now()  # ID tokens carry real times
    config = OidcConfig(issuer=issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                        redirect_uri="http://127.0.0.1/api/auth/oidc/callback")
    access = AccessControl(engine, tmp_path / "keys", audit=sink, clock=clock, oidc=config)
    app = FastAPI()
    app.include_router(admin_router(access))
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield access, client


def round_trip(client: httpx.Client) -> httpx.Response:
    """Browser steps: our login redirect -> provider -> back to our callback."""
    to_idp = client.get("/api/auth/oidc/login")
    assert to_idp.status_code == 302
    back = httpx.get(to_idp.headers["location"], timeout=30)
    assert back.status_code == 302
    q = parse_qs(urlparse(back.headers["location"]).query)
    return client.get("/api/auth/oidc/callback", params={"code": q["code"][0], "state": q["state"][0]})


def link(access, make, username: str, role: str, subject: str):
    from sqlalchemy.orm import Session

    from safepacs.access.models import Account

    user = make(username, role)
    with Session(access.ctx.engine) as s, s.begin():
        s.get(Account, user.id).oidc_subject = subject
    return user


@pytest.fixture
def make(sso, make_user):
    return make_user


def test_oidc_login_maps_subject_to_existing_account(sso, make, idp, sink):
    access, client = sso
    link(access, make, "res", "researcher", "sso-doc")
    r = round_trip(client)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    who = access.authenticate(token)
    assert (who.username, who.role, who.via) == ("res", "researcher", "oidc")


def test_clinician_needs_provider_asserted_mfa(sso, make, idp):
    access, client = sso
    _, behaviour = idp
    link(access, make, "doc", "physician", "sso-doc")
    assert round_trip(client).status_code == 401
    behaviour["amr"] = ["pwd", "otp"]
    assert round_trip(client).status_code == 200


@pytest.mark.parametrize("tamper", [{"rogue": True}, {"aud": "someone-else"}, {"nonce": "replayed"},
                                    {"ttl": -120}, {"sub": "nobody-linked"}])
def test_bad_id_tokens_are_refused(sso, make, idp, sink, tamper):
    access, client = sso
    _, behaviour = idp
    link(access, make, "res", "researcher", "sso-doc")
    behaviour.update(tamper)
    r = round_trip(client)
    assert r.status_code == 401
    reasons = {e.reason for e in sink.events if e.outcome and e.detail.get("via") == "oidc"}
    expected = "no active account is linked to this identity" if "sub" in tamper else "ID token failed verification"
    assert reasons == {expected}


def test_admins_never_log_in_by_oidc_and_state_is_single_use(sso, make, idp):
    access, client = sso
    link(access, make, "sec", "security_admin", "sso-doc")
    assert round_trip(client).status_code == 401
    r = client.get("/api/auth/oidc/callback", params={"code": "x", "state": "never-issued"})
    assert r.status_code == 401
