"""The /api router over real HTTP: login flow, header-only tokens, and the role separation
matrix (each administrator role tries every administrative endpoint; only its own succeed)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from safepacs.access.principal import ADMIN_ROLES
from safepacs.api.admin import admin_router
from safepacs.audit.events import SECURITY_ALERT
from tests.access.conftest import PASSWORD, ac, clock, engine, make_user, sink, studies  # noqa: F401
from tests.access.http import serving


@pytest.fixture
def api(ac):  # noqa: F811
    app = FastAPI()
    app.include_router(admin_router(ac))
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def login(api, user, clock) -> str:  # noqa: F811
    body = {"username": user.principal.username, "password": PASSWORD}
    if user.secret:
        body["totp"] = user.code(clock)
    r = api.post("/api/auth/login", json=body)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_login_refresh_logout_over_http(api, make_user, clock):  # noqa: F811
    make_user("res", "researcher")
    r = api.post("/api/auth/login", json={"username": "res", "password": PASSWORD})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "ok" and body["token_type"] == "Bearer"
    me = api.get("/api/auth/me", headers=bearer(body["access_token"]))
    assert me.json()["role"] == "researcher"
    r2 = api.post("/api/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert r2.status_code == 200
    replay = api.post("/api/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert replay.status_code == 401
    assert api.get("/api/auth/me", headers=bearer(r2.json()["access_token"])).status_code == 401
    r3 = api.post("/api/auth/login", json={"username": "res", "password": PASSWORD}).json()
    assert api.post("/api/auth/logout", headers=bearer(r3["access_token"])).status_code == 200
    assert api.get("/api/auth/me", headers=bearer(r3["access_token"])).status_code == 401
    bad = api.post("/api/auth/login", json={"username": "res", "password": "nope nope nope"})
    assert bad.status_code == 401 and "nope" not in bad.text


def test_first_login_over_http(api, make_user, clock):  # noqa: F811
    sys = make_user("sys", "system_admin")
    token = login(api, sys, clock)
    created = api.post("/api/accounts", json={"username": "newdoc", "role": "physician"}, headers=bearer(token))
    assert created.status_code == 201
    otp = created.json()["one_time_password"]
    r = api.post("/api/auth/login", json={"username": "newdoc", "password": otp}).json()
    assert r["status"] == "password_change_required" and "access_token" not in r
    setup = bearer(r["setup_token"])
    assert api.get("/api/auth/me", headers=setup).status_code == 401  # setup token: two routes only
    assert api.post("/api/auth/password", json={"old_password": otp, "new_password": "long new passphrase"},
                    headers=setup).status_code == 200
    r = api.post("/api/auth/login", json={"username": "newdoc", "password": "long new passphrase"}).json()
    assert r["status"] == "totp_enrolment_required"
    uri = api.post("/api/auth/totp", json={}, headers=bearer(r["setup_token"])).json()["provisioning_uri"]
    assert uri.startswith("otpauth://")


@pytest.mark.parametrize("param", ["access_token", "token", "TOKEN", "jwt"])
def test_token_in_query_string_is_refused_and_audited(api, make_user, clock, sink, param):  # noqa: F811
    res = make_user("res", "researcher")
    token = login(api, res, clock)
    r = api.get("/api/auth/me", params={param: token}, headers=bearer(token))
    assert r.status_code == 400
    r = api.post(f"/api/auth/login?{param}={token}", json={"username": "res", "password": PASSWORD})
    assert r.status_code == 400
    alerts = [e for e in sink.events if e.event_id == SECURITY_ALERT and "query string" in e.reason]
    assert len(alerts) == 2 and token not in alerts[0].to_json()


def test_missing_or_bad_authorization_is_401(api):
    assert api.get("/api/accounts").status_code == 401
    assert api.get("/api/accounts", headers={"Authorization": "Basic abc"}).status_code == 401
    assert api.get("/api/accounts", headers=bearer("not-a-token")).status_code == 401


def _endpoints(ids: dict) -> list[tuple[str, str, dict | None, set[str]]]:
    sysadm, secadm = {"system_admin"}, {"security_admin"}
    far = (ids["now"] + timedelta(days=30)).isoformat()
    return [
        ("GET", "/api/accounts", None, sysadm),
        ("POST", "/api/accounts", {"username": "newbie", "role": "researcher"}, sysadm),
        ("POST", f"/api/accounts/{ids['res']}/disable", None, sysadm),
        ("POST", f"/api/accounts/{ids['res']}/enable", None, sysadm),
        ("POST", f"/api/accounts/{ids['tp2']}/reset", None, sysadm),
        ("POST", f"/api/accounts/{ids['tp2']}/role", {"role": "researcher"}, sysadm),
        ("POST", f"/api/accounts/{ids['svc']}/tokens", {"name": "feed"}, sysadm),
        ("POST", f"/api/accounts/{ids['doc']}/oidc", {"subject": "sso-doc"}, sysadm),
        ("GET", f"/api/accounts/{ids['doc']}/access", None, secadm),
        ("POST", "/api/patients/link", {"account_id": ids["pat"], "patient": "PSEUDO-A"}, secadm),
        ("POST", "/api/care", {"account_id": ids["doc"], "patient": "PSEUDO-A"}, secadm),
        ("POST", f"/api/care/{ids['care']}/end", None, secadm),
        ("POST", "/api/projects", {"code": "NEW-1", "purpose": "x", "expires_at": far}, secadm),
        ("POST", f"/api/projects/{ids['project']}/members", {"account_id": ids["res"]}, secadm),
        ("POST", f"/api/projects/{ids['project']}/cohort", {"patients": ["PSEUDO-A"]}, secadm),
        ("POST", f"/api/projects/{ids['project']}/end", None, secadm),
        ("POST", "/api/grants", {"account_id": ids["tp"], "study_uids": ["2.25.10001"]}, secadm),
        ("POST", "/api/grants/service", {"account_id": ids["svc"]}, secadm),
        ("POST", f"/api/grants/{ids['grant']}/revoke", None, secadm),
        ("GET", "/api/break-glass/queue", None, secadm),
        ("POST", f"/api/break-glass/{ids['bg']}/review", {"outcome": "justified"}, secadm),
        ("GET", "/api/approvals", None, secadm),
        ("POST", "/api/approvals", {"operation": "export_identified", "target": "2.25.10001"}, secadm),
        ("POST", f"/api/approvals/{ids['approval']}/approve", None, secadm),
        ("POST", f"/api/approvals/{ids['approval2']}/deny", None, secadm),
        ("GET", "/api/policy", None, set(ADMIN_ROLES)),
        ("POST", "/api/break-glass", {"study_uid": "2.25.10001", "reason_code": "imminent_risk",
                                      "justification": "x", "password": PASSWORD, "totp": "123456"}, set()),
    ]


@pytest.mark.parametrize("role", ADMIN_ROLES)
def test_role_separation_matrix(api, ac, make_user, studies, clock, role):  # noqa: F811
    admin = make_user("actor", role)
    sec = make_user("sec0", "security_admin")
    doc, res, tp, tp2, svc, pat = (make_user(n, r) for n, r in (
        ("doc", "physician"), ("res", "researcher"), ("tp", "third_party"), ("tp2", "third_party"),
        ("svc", "service"), ("pat", "patient")))
    ids = {n: u.id for n, u in (("doc", doc), ("res", res), ("tp", tp), ("tp2", tp2), ("svc", svc), ("pat", pat))}
    ids["now"] = clock.now
    ids["care"] = ac.grants.add_care(sec.principal, doc.id, "PSEUDO-B").id
    ids["project"] = ac.grants.create_project(sec.principal, "P-1", "x", clock.now + timedelta(days=9)).id
    ids["grant"] = ac.grants.create_grant(sec.principal, tp.id, ["2.25.20001"]).id
    ids["bg"] = ac.break_glass.start(doc.principal, "2.25.10002", "imminent_risk", "x",
                                     password=PASSWORD, code=doc.code(clock)).id
    ids["approval"] = ac.approvals.request(doc.principal, "export_identified", "2.25.10001").id
    ids["approval2"] = ac.approvals.request(doc.principal, "bulk_reidentify", "P-1").id
    headers = bearer(login(api, admin, clock))
    for method, path, body, owners in _endpoints(ids):
        r = api.request(method, path, json=body, headers=headers)
        if role in owners:
            assert r.status_code < 300, (method, path, r.status_code, r.text)
        else:
            assert r.status_code == 403, (method, path, r.status_code, r.text)


def test_no_api_call_gives_an_account_a_second_or_admin_role(api, make_user, clock):  # noqa: F811
    sys = make_user("sys", "system_admin")
    sec = make_user("sec", "security_admin")
    res = make_user("res", "researcher")
    headers = bearer(login(api, sys, clock))
    for target, role in ((sec.id, "physician"), (sec.id, "system_admin"), (res.id, "security_admin"),
                         (sys.id, "security_admin"), (sys.id, "physician")):
        assert api.post(f"/api/accounts/{target}/role", json={"role": role}, headers=headers).status_code == 403
    r = api.post(f"/api/accounts/{res.id}/role", json={"role": "security_admin,physician"}, headers=headers)
    assert r.status_code == 422
    roles = {a["username"]: a["role"] for a in api.get("/api/accounts", headers=headers).json()}
    assert roles == {"sys": "system_admin", "sec": "security_admin", "res": "researcher"}


def test_break_glass_over_http_and_review(api, ac, make_user, studies, clock, sink):  # noqa: F811
    doc = make_user("doc", "physician")
    sec = make_user("sec", "security_admin")
    doc_h = bearer(login(api, doc, clock))
    clock.advance(seconds=30)  # a fresh TOTP step for the re-authentication
    body = {"study_uid": studies["PSEUDO-A"][0], "reason_code": "patient_unconscious",
            "justification": "trauma bay", "password": PASSWORD, "totp": doc.code(clock)}
    r = api.post("/api/break-glass", json=body, headers=doc_h)
    assert r.status_code == 201, r.text
    assert any(e.event_id == SECURITY_ALERT and e.purpose == "emergency" for e in sink.events)
    sec_h = bearer(login(api, sec, clock))
    queue = api.get("/api/break-glass/queue", headers=sec_h).json()
    assert [q["id"] for q in queue] == [r.json()["id"]] and queue[0]["patient"] == "PSEUDO-A"
    assert api.post(f"/api/break-glass/{queue[0]['id']}/review", json={"outcome": "justified"},
                    headers=sec_h).status_code == 200
    assert api.get("/api/break-glass/queue", headers=sec_h).json() == []


def test_openapi_documents_request_models(ac):  # noqa: F811
    app = FastAPI()
    app.include_router(admin_router(ac))
    schema = app.openapi()
    assert {"LoginBody", "GrantBody", "BreakGlassBody", "ApprovalBody"} <= set(schema["components"]["schemas"])
    assert "/api/auth/login" in schema["paths"]


def test_every_route_refuses_missing_forged_and_expired_tokens(api, ac, make_user, clock):  # noqa: F811
    """A sweep over the router's own OpenAPI schema: no 2xx and no 5xx without a valid token."""
    import jwt as pyjwt

    res = make_user("res", "researcher")
    good = login(api, res, clock)
    claims = pyjwt.decode(good, options={"verify_signature": False})
    forged = pyjwt.encode({**claims, "role": "system_admin"}, b"x" * 32, algorithm="HS256")
    app = FastAPI()
    app.include_router(admin_router(ac))
    schema = app.openapi()
    clock.advance(minutes=16)  # `good` has expired now
    open_routes = {"/api/auth/login", "/api/auth/refresh", "/api/auth/oidc/login", "/api/auth/oidc/callback"}
    checked = 0
    for path, ops in schema["paths"].items():
        concrete = path.replace("{account_id}", "1").replace("{care_id}", "1").replace(
            "{project_id}", "1").replace("{grant_id}", "1").replace("{emergency_id}", "1").replace(
            "{approval_id}", "1")
        for method in ops:
            for headers in ({}, bearer(forged), bearer(good), bearer("sp_" + "A" * 43)):
                r = api.request(method.upper(), concrete, headers=headers, json={"username": "res", "password": "x"})
                assert r.status_code < 500, (method, path, r.status_code)
                if path in open_routes:
                    assert r.status_code in (400, 401, 404, 422), (method, path, r.status_code)
                else:
                    assert r.status_code == 401, (method, path, r.status_code)
                checked += 1
    assert checked >= 30 * 4
