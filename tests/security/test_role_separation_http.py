"""三员分立 on the full served app: each administrator role tries every route of
``/openapi.json`` (real ids, valid bodies) and only its own succeed; DICOMweb and audit routes
included.  No API call gives one account two roles."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from safepacs.access.models import Account
from tests.security.conftest import Live, as_admin, new_person

ADMINS = ("system_admin", "security_admin", "security_auditor")
SYS = {
    ("GET", "/api/accounts"), ("POST", "/api/accounts"), ("POST", "/api/accounts/{account_id}/disable"),
    ("POST", "/api/accounts/{account_id}/enable"), ("POST", "/api/accounts/{account_id}/reset"),
    ("POST", "/api/accounts/{account_id}/role"), ("POST", "/api/accounts/{account_id}/tokens"),
    ("POST", "/api/accounts/{account_id}/oidc"), ("POST", "/api/accounts/{account_id}/profile"),
}
SEC = {
    ("GET", "/api/accounts/{account_id}/access"), ("POST", "/api/patients/link"), ("POST", "/api/care"),
    ("POST", "/api/care/{care_id}/end"), ("POST", "/api/projects"), ("POST", "/api/projects/{project_id}/members"),
    ("POST", "/api/projects/{project_id}/cohort"), ("POST", "/api/projects/{project_id}/end"),
    ("POST", "/api/grants"), ("POST", "/api/grants/service"), ("POST", "/api/grants/{grant_id}/revoke"),
    ("GET", "/api/break-glass/queue"), ("POST", "/api/break-glass/{emergency_id}/review"),
    ("GET", "/api/approvals"), ("POST", "/api/approvals"), ("GET", "/api/approvals/{approval_id}"),
    ("POST", "/api/approvals/{approval_id}/approve"), ("POST", "/api/approvals/{approval_id}/deny"),
    ("PUT", "/api/levels/{name}"), ("DELETE", "/api/levels/{name}"),
}
AUD = {
    ("GET", "/api/audit/appeals"), ("POST", "/api/audit/appeals/{appeal_id}"), ("GET", "/api/audit/entries"),
    ("GET", "/api/audit/heads/latest"), ("GET", "/api/audit/proofs/inclusion"),
    ("GET", "/api/audit/proofs/consistency"), ("GET", "/api/audit/public-key"),
}
SHARED = {("GET", "/api/policy"): ADMINS, ("GET", "/api/audit/alerts"): ("security_admin", "security_auditor"),
          ("POST", "/api/audit/alerts/{alert_id}"): ("security_admin", "security_auditor"),
          ("GET", "/api/auth/me"): ADMINS, ("GET", "/api/levels"): ADMINS,
          ("GET", "/api/levels/{name}/history"): ADMINS}
LEVEL = {"header": "deidentified", "uids": "fresh", "dates": "remove", "pixels": "cleaned", "watermark": True,
         "keep": ["Modality", "Rows", "Columns", "PixelData"]}
OWN = {"system_admin": SYS, "security_admin": SEC, "security_auditor": AUD}
# sign-in and self-service routes every account uses on itself; exercised by the fixture's
# real first sign-in and by test_attacks (a logout or password change here would end the
# fixture's sessions)
SELF_SERVICE = {("POST", "/api/auth/login"), ("POST", "/api/auth/refresh"), ("POST", "/api/auth/logout"),
                ("POST", "/api/auth/password"), ("POST", "/api/auth/totp"), ("GET", "/api/auth/oidc/login"),
                ("GET", "/api/auth/oidc/callback")}
# own routes that may answer 404/409 instead of 2xx because the target must exist in a state
# the test cannot make without the very role (e.g. an emergency access to review)
MAY_MISS = {("POST", "/api/break-glass/{emergency_id}/review"), ("POST", "/api/audit/appeals/{appeal_id}"),
            ("POST", "/api/audit/alerts/{alert_id}"), ("POST", "/api/approvals/{approval_id}/approve"),
            ("POST", "/api/approvals/{approval_id}/deny")}


def owners(route: tuple[str, str]) -> tuple[str, ...]:
    if route in SHARED:
        return SHARED[route]
    return tuple(r for r, routes in OWN.items() if route in routes)


@pytest.fixture(scope="module")
def targets(live: Live) -> dict:
    """Throwaway accounts and grants for the routes to act on (the fixture's own people stay untouched)."""
    sysadmin = live.people["system_admin"]
    p1 = live.patients[1]
    t = {
        "doc": new_person(live.url, sysadmin, "rs_doc", "physician"),
        "res": new_person(live.url, sysadmin, "rs_res", "researcher"),
        "tp": new_person(live.url, sysadmin, "rs_tp", "third_party"),
        "pat": new_person(live.url, sysadmin, "rs_pat", "patient"),
    }
    svc = as_admin(live, "POST", "/api/accounts", {"username": "rs_svc", "role": "service"}, who="system_admin")
    t["svc_id"] = svc["account"]["id"]
    as_admin(live, "PUT", "/api/levels/rs-level", LEVEL)  # for DELETE (then PUT) to act on
    t["care"] = as_admin(live, "POST", "/api/care", {"account_id": t["doc"].account_id, "patient": p1.pseudonym})["id"]
    t["project"] = as_admin(live, "POST", "/api/projects", {
        "code": "rs-project", "purpose": "t", "expires_at": (datetime.now(UTC) + timedelta(days=2)).isoformat()})["id"]
    t["grant"] = as_admin(live, "POST", "/api/grants", {"account_id": t["tp"].account_id,
                                                        "study_uids": [p1.studies[0]]})["id"]
    with live.client(token=t["doc"].token) as c:  # requested by a clinician, voted on by the admin
        r = c.post("/api/approvals", json={"operation": "export_identified", "target": p1.studies[0]})
    assert r.status_code == 201, r.text
    t["approval"] = r.json()["id"]
    return t


def request_for(live: Live, t: dict, method: str, path: str, role: str) -> tuple[str, dict | None, dict]:
    """The concrete URL, JSON body and query of one route, with real ids and UIDs."""
    st, se, sop = live.patients[1].instances[0]
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    ids = {"account_id": t["doc"].account_id, "care_id": t["care"], "project_id": t["project"],
           "grant_id": t["grant"], "approval_id": t["approval"], "emergency_id": 1, "alert_id": 1,
           "appeal_id": 1, "index": 0, "study": st, "series": se, "sop": sop, "frame_list": "1",
           "frame": "1", "tag": "7FE00010", "name": "rs-level"}
    if path.startswith("/api/accounts/{account_id}/") and path.endswith(("tokens", "oidc")):
        ids["account_id"] = t["svc_id"]
    url = re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), path)
    bodies = {
        "/api/accounts": {"username": f"rs-new-{role.replace('_', '-')}", "role": "researcher"},
        "/api/accounts/{account_id}/role": {"role": "radiologist"},
        "/api/accounts/{account_id}/tokens": {"name": f"rs-{role}"},
        "/api/accounts/{account_id}/oidc": {"subject": f"rs-subject-{role}"},
        "/api/accounts/{account_id}/profile": {"family_name": "Synthetic"},
        "/api/patients/link": {"account_id": t["pat"].account_id, "patient": live.patients[2].pseudonym},
        "/api/care": {"account_id": t["doc"].account_id, "patient": live.patients[1].pseudonym},
        "/api/projects": {"code": f"rs-{role.replace('_', '-')}", "purpose": "t", "expires_at": soon},
        "/api/projects/{project_id}/members": {"account_id": t["res"].account_id},
        "/api/projects/{project_id}/cohort": {"study_uids": [st]},
        "/api/grants": {"account_id": t["tp"].account_id, "study_uids": [st]},
        "/api/grants/service": {"account_id": t["svc_id"]},
        "/api/break-glass": {"study_uid": st, "reason_code": "emergency", "justification": "t",
                             "password": "not the password"},
        "/api/break-glass/{emergency_id}/review": {"outcome": "justified"},
        "/api/approvals": {"operation": "export_identified", "target": st},
        "/api/me/access-log/{index}/appeal": {"statement": "t"},
        "/api/audit/appeals/{appeal_id}": {"status": "closed"},
        "/api/audit/alerts/{alert_id}": {"status": "acknowledged"},
        "/api/levels/{name}": LEVEL,
    }
    params = {"/api/audit/proofs/inclusion": {"index": 0}, "/api/audit/proofs/consistency": {"first": 1, "second": 2}}
    return url, bodies.get(path) if method in ("POST", "PUT") else None, params.get(path, {})


def schema_routes(live: Live) -> list[tuple[str, str]]:
    with live.client() as c:
        spec = c.get("/openapi.json").json()
    return sorted((m.upper(), p) for p, ops in spec["paths"].items() for m in ops)


def test_every_route_is_classified(live: Live) -> None:
    """A new route must be given an owner (or none) here before the suite passes."""
    routes = schema_routes(live)
    assert len(routes) > 50
    for route in routes:
        assert route in SELF_SERVICE or route[1].startswith(("/dicomweb/", "/api/me/")) or \
            route == ("POST", "/api/break-glass") or owners(route), route


def test_each_administrator_succeeds_only_on_its_own_routes(live: Live, targets: dict) -> None:
    routes = [r for r in schema_routes(live) if r not in SELF_SERVICE]
    outcome: dict[tuple[str, str], dict[str, int]] = {}
    for method, path in routes:
        own = owners((method, path))
        # the owner goes last: a successful call must not change what the others are refused
        for role in sorted(ADMINS, key=lambda r: r in own):
            url, body, params = request_for(live, targets, method, path, role)
            with live.client(role) as c:
                r = c.request(method, url, json=body, params=params,
                              headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=x'}
                              if path.startswith("/dicomweb/") and method == "POST" else None,
                              content=b"--x--\r\n" if path.startswith("/dicomweb/") and method == "POST" else None)
            outcome.setdefault((method, path), {})[role] = r.status_code
            if role in own:
                ok = 200 <= r.status_code < 300 or ((method, path) in MAY_MISS and r.status_code in (404, 409))
                assert ok, (role, method, path, r.status_code, r.text[:200])
            else:
                assert r.status_code in (401, 403, 404), (role, method, path, r.status_code, r.text[:200])
                if path.startswith("/dicomweb/"):
                    assert live.patients[1].instances[0][2].encode() not in r.content
    assert all(any(200 <= s < 300 for s in roles.values()) for route, roles in outcome.items()
               if owners(route) and route not in MAY_MISS), "an own route never succeeded"


def test_no_api_call_gives_one_account_two_roles(live: Live) -> None:
    people = live.people
    for role in ADMINS:
        other = next(r for r in ADMINS if r != role)
        with live.client("system_admin") as c:
            # an administrator role to an existing account, or another one to an administrator
            for account, new_role in ((people["doc_a"].account_id, role), (people[role].account_id, other),
                                      (people[role].account_id, "physician")):
                r = c.post(f"/api/accounts/{account}/role", json={"role": new_role})
                assert r.status_code in (400, 403, 409), (account, new_role, r.status_code)
                assert live.refusal_recorded(r)
            # a second account under an administrator's name
            r = c.post("/api/accounts", json={"username": people[role].username, "role": other})
            assert r.status_code in (400, 403, 409)
        with live.client(role) as c:  # nobody changes their own role
            r = c.post(f"/api/accounts/{people[role].account_id}/role", json={"role": other})
            assert r.status_code == 403 and live.refusal_recorded(r)
    with Session(live.archive.access.ctx.engine) as s:
        for role in ADMINS:
            acct = s.get(Account, people[role].account_id)
            assert acct.role == role
        dupes = s.execute(select(Account.username).group_by(Account.username).having(func.count() > 1)).all()
        assert not dupes
    with live.client("system_admin") as c:
        r = c.post("/api/accounts", json={"username": "two-roles", "role": ["system_admin", "security_auditor"]})
        assert r.status_code == 400
