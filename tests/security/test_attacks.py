"""The incident, replayed against a live server: every way of asking for the other patient's
images is refused (401/403/404 or the DICOM refusal), nothing of that patient comes back, and
each refusal is in the audit trail.  Each attack is paired with a control showing the same
caller CAN read what they are entitled to, so a refusal is not an artefact of a broken setup."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tests.security.conftest import Live, as_admin, new_person

needs_dcmtk = pytest.mark.skipif(shutil.which("findscu") is None, reason="DCMTK is not installed")
# (attacker, the patient they are NOT entitled to)
ATTACKERS = [("doc_a", 2), ("researcher", 2), ("third", 2), ("patient2", 1)]
REFUSED = (401, 403, 404)
REFUSED_0124 = re.compile(r"0x0*124\b", re.I)  # DICOM "refused: not authorized"


def leaks(body: bytes, needles: set[str]) -> set[str]:
    """Needles found in ``body`` as UTF-8 or as JSON-escaped text."""
    return {n for n in needles if n.encode() in body or json.dumps(n)[1:-1].encode() in body}


def wado_paths(st: str, se: str, sop: str) -> list[str]:
    base = "/dicomweb/studies"
    inst = f"{base}/{st}/series/{se}/instances/{sop}"
    return [f"{base}/{st}", f"{base}/{st}/metadata", f"{base}/{st}/series/{se}",
            f"{base}/{st}/series/{se}/metadata", inst, f"{inst}/metadata", f"{inst}/frames/1",
            f"{inst}/rendered", f"{inst}/frames/1/rendered", f"{inst}/bulkdata/7FE00010"]


def assert_refused(live: Live, r, needles: set[str], *, codes: tuple[int, ...] = REFUSED) -> None:
    assert r.status_code in codes, (r.request.url.path, r.status_code)
    assert not leaks(r.content, needles), "a response carried the other patient's data"
    assert live.refusal_recorded(r), "the refusal is not in the audit trail"


def own_instance(live: Live, who: str) -> tuple[str, str, str]:
    """An instance the caller may read, with the UIDs as the caller knows them (QIDO)."""
    with live.client(who) as c:
        r = c.get("/dicomweb/instances")
    assert r.status_code == 200 and r.json(), (who, r.status_code)
    o = r.json()[0]
    return tuple(o[t]["Value"][0] for t in ("0020000D", "0020000E", "00080018"))  # type: ignore[return-value]


# ------------------------------------------------------------------ WADO-RS: changed UIDs


@pytest.mark.parametrize("attacker,target", ATTACKERS)
def test_wado_with_the_other_patients_uids_is_refused_and_audited(live: Live, attacker: str, target: int) -> None:
    other = live.patients[target]
    st, se, sop = own_instance(live, attacker)  # control: the caller reads its own
    with live.client(attacker) as c:
        assert c.get(f"/dicomweb/studies/{st}/series/{se}/instances/{sop}").status_code == 200
        for ost, ose, osop in other.instances:
            for path in wado_paths(ost, ose, osop):
                assert_refused(live, c.get(path), other.needles())


@pytest.mark.parametrize("attacker,target", ATTACKERS)
def test_mixed_own_study_with_the_other_patients_series_or_instance_is_refused(
        live: Live, attacker: str, target: int) -> None:
    other = live.patients[target]
    st, se, sop = own_instance(live, attacker)
    ost, ose, osop = other.instances[0]
    with live.client(attacker) as c:
        mixed = (*wado_paths(st, ose, osop), *wado_paths(st, se, osop), *wado_paths(ost, se, sop))
        for path in [p for p in mixed if ost in p or ose in p or osop in p]:
            assert_refused(live, c.get(path), other.needles())


# ------------------------------------------------------------------ QIDO-RS: filters


def qido_attempts(other) -> list[list[tuple[str, str]]]:
    orig_id = next(v for v in other.originals if v.isdigit() and len(v) >= 10)
    long = "9" * 5000
    return [
        [("PatientID", other.pseudonym)], [("PatientID", orig_id)], [("PatientID", "*")],
        [("PatientName", "*")], [("PatientName", "?*")], [("PatientName", "S*")],
        [("AccessionNumber", "*")], [("StudyInstanceUID", other.studies[0])],
        [("StudyInstanceUID", ",".join(other.studies))],
        [("PatientID", "' OR 1=1 --")], [("PatientName", "' OR '1'='1")], [("PatientID", "%")],
        [("PatientName", "%%")], [("PatientID", "\\")], [("PatientName", "*\\*")],
        [("PatientID", long)], [("PatientName", long)],
        [("PatientID", "x"), ("PatientID", other.pseudonym)],
        [("StudyInstanceUID", "1.2"), ("StudyInstanceUID", other.studies[0])],
        [("includefield", "all")], [("includefield", "all"), ("PatientID", other.pseudonym)],
        [("limit", "100000"), ("offset", "0")], [("fuzzymatching", "true"), ("PatientName", "*")],
    ]


@pytest.mark.parametrize("attacker,target", ATTACKERS)
def test_qido_filters_naming_the_other_patient_return_nothing_of_them(live: Live, attacker: str, target: int) -> None:
    """A filtered-out study answers like one that does not exist: an empty result (or a 400
    for a malformed filter), never a row, a count or an error that depends on it."""
    other = live.patients[target]
    with live.client(attacker) as c:
        assert c.get("/dicomweb/studies").json(), "control: the caller sees its own studies"
        for params in qido_attempts(other):
            for path in ("/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances",
                         f"/dicomweb/studies/{other.studies[0]}/series",
                         f"/dicomweb/studies/{other.studies[0]}/instances"):
                r = c.get(path, params=params)
                assert r.status_code in (200, 400), (path, r.status_code)
                assert not leaks(r.content, other.needles()), (path, [k for k, _ in params])
                if r.status_code == 200 and other.studies[0] in path:
                    assert r.json() == [], path
            assert live.recorded(r), "the query is not in the audit trail"
            r = c.get(f"/dicomweb/studies/{other.studies[0]}/series/{other.series[0][1]}/instances")
            assert r.status_code in (200, 404) and not leaks(r.content, other.needles())
            assert r.status_code == 404 or r.json() == []


def test_a_study_you_may_not_see_answers_exactly_like_one_that_does_not_exist(live: Live) -> None:
    other = live.patients[2]
    missing = "2.25." + "".join(secrets.choice("0123456789") for _ in range(30))
    with live.client("doc_a") as c:
        for real, fake in ((other.studies[0], missing),):
            a, b = c.get(f"/dicomweb/studies/{real}"), c.get(f"/dicomweb/studies/{fake}")
            assert (a.status_code, a.json()) == (b.status_code, b.json()) == (404, {"error": "not found", "status": 404})
            a, b = c.get(f"/dicomweb/studies/{real}/series"), c.get(f"/dicomweb/studies/{fake}/series")
            assert (a.status_code, a.content) == (b.status_code, b.content)


# ------------------------------------------------------------------ tokens


def _claims(live: Live, token: str) -> dict:
    return jwt.decode(token, live.archive.access.ctx.keys.jwt, algorithms=["HS256"], audience="safepacs-api")


def forged_tokens(live: Live) -> dict[str, str]:
    key = live.archive.access.ctx.keys.jwt
    good = _claims(live, live.people["doc_a"].token)
    now = int(time.time())
    return {
        "random": secrets.token_urlsafe(40),
        "random-api-token": "sp_" + secrets.token_urlsafe(32),
        "wrong signature": jwt.encode(good, secrets.token_bytes(32), algorithm="HS256"),
        "alg none": jwt.encode(good, None, algorithm="none"),
        "other audience": jwt.encode({**good, "aud": "another-app"}, key, algorithm="HS256"),
        "other issuer": jwt.encode({**good, "iss": "https://idp.example"}, key, algorithm="HS256"),
        "expired": jwt.encode({**good, "iat": now - 3600, "nbf": now - 3600, "exp": now - 1800}, key, algorithm="HS256"),
        "not yet valid": jwt.encode({**good, "nbf": now + 3600, "exp": now + 7200}, key, algorithm="HS256"),
        "role escalated": jwt.encode({**good, "role": "service"}, key, algorithm="HS256"),
        "other account": jwt.encode({**good, "sub": str(live.people["svc"].account_id)}, key, algorithm="HS256"),
        "setup scope": jwt.encode({**good, "scope": "setup"}, key, algorithm="HS256"),
        "truncated": live.people["doc_a"].token[:-6],
    }


def test_forged_expired_and_other_audience_tokens_are_refused_and_audited(live: Live) -> None:
    key = live.archive.access.ctx.keys.jwt
    good = _claims(live, live.people["doc_a"].token)
    st = live.patients[1].studies[0]
    with live.client(token=jwt.encode(good, key, algorithm="HS256")) as c:
        assert c.get(f"/dicomweb/studies/{st}/metadata").status_code == 200  # control: the key is right
    needles = live.patients[1].needles() | live.patients[2].needles()
    for name, token in forged_tokens(live).items():
        with live.client(token=token) as c:
            for path in (f"/dicomweb/studies/{st}", f"/dicomweb/studies/{st}/metadata", "/dicomweb/studies",
                         "/api/auth/me", "/api/accounts"):
                r = c.get(path)
                assert r.status_code == 401, (name, path, r.status_code)
                assert not leaks(r.content, needles)
                assert live.refusal_recorded(r), name


def test_tokens_in_the_query_string_are_refused(live: Live) -> None:
    token = live.people["doc_a"].token
    st = live.patients[1].studies[0]
    with live.client() as c:
        for param in ("access_token", "token", "bearer", "jwt", "api_key"):
            for path in (f"/dicomweb/studies/{st}", "/dicomweb/studies", "/api/auth/me"):
                r = c.get(path, params={param: token})
                assert r.status_code in (400, 401), (param, path, r.status_code)
                assert not leaks(r.content, live.patients[1].needles())
                assert live.refusal_recorded(r)
    with live.client("doc_a") as c:  # even alongside a valid header
        r = c.get(f"/dicomweb/studies/{st}", params={"access_token": token})
        assert r.status_code in (400, 401) and live.refusal_recorded(r)


def _login(live: Live, username: str) -> dict:
    from tests.security.conftest import PASSWORD

    with live.client() as c:
        r = c.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    return r.json()


def test_replayed_refresh_token_revokes_the_whole_family(live: Live) -> None:
    first = _login(live, "researcher")  # a session of its own (no second factor for the role)
    with live.client() as c:
        r = c.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert r.status_code == 200
        second = r.json()
        with live.client(token=second["access_token"]) as me:
            assert me.get("/api/auth/me").status_code == 200
        replay = c.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert replay.status_code == 401 and live.refusal_recorded(replay)
        later = c.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert later.status_code == 401, "the rotated token survived a replay of its parent"
    time.sleep(5.5)  # past the server's 5 s token cache
    with live.client(token=second["access_token"]) as me:
        r = me.get("/dicomweb/studies")
        assert r.status_code == 401 and live.refusal_recorded(r)
    with live.client("researcher") as other_session:  # the fixture's own session is untouched
        assert other_session.get("/dicomweb/studies").status_code == 200


def test_logged_out_token_stops_working_after_the_cache(live: Live) -> None:
    session = _login(live, "researcher")
    with live.client(token=session["access_token"]) as c:
        assert c.get("/dicomweb/studies").status_code == 200
        assert c.post("/api/auth/logout").status_code == 200
        time.sleep(5.5)
        for path in ("/dicomweb/studies", "/api/auth/me"):
            r = c.get(path)
            assert r.status_code == 401 and live.refusal_recorded(r)


# ------------------------------------------------------------------ administrators


@pytest.mark.parametrize("role", ["system_admin", "security_admin", "security_auditor"])
def test_administrators_get_no_image_from_any_route(live: Live, role: str) -> None:
    needles = live.patients[1].needles() | live.patients[2].needles()
    with live.client(role) as c:
        assert c.get("/api/auth/me").status_code == 200  # control: signed in
        for p in (1, 2):
            for st, se, sop in live.patients[p].instances[:2]:
                for path in wado_paths(st, se, sop):
                    assert_refused(live, c.get(path), needles, codes=(403, 404))
                for path in (f"/dicomweb/studies/{st}/series", f"/dicomweb/studies/{st}/instances"):
                    assert_refused(live, c.get(path), needles, codes=(403,))
        for path in ("/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances"):
            assert_refused(live, c.get(path, params={"includefield": "all"}), needles, codes=(403,))


# ------------------------------------------------------------------ traversal


TRAVERSALS = ["..%2f..%2f..%2fetc%2fpasswd", "..%2F..%2Fkeys%2Fkek.key", "%2e%2e%2f%2e%2e%2fkeys",
              "1.2.3%00", "%00", "1.2%2f..%2f..", "%2fetc%2fpasswd", "...", "1..2",
              "%252e%252e%252f", "..%5c..%5ckeys", "C:%5cwindows"]


def test_directory_traversal_in_every_path_parameter_is_refused(live: Live) -> None:
    st, se, sop = live.patients[1].instances[0]
    needles = live.patients[1].needles() | live.patients[2].needles() | {"root:", "BEGIN", "kek"}
    with live.client("svc") as c:
        assert c.get(f"/dicomweb/studies/{st}/series/{se}/instances/{sop}").status_code == 200  # control
        for bad in TRAVERSALS:
            templates = [f"/dicomweb/studies/{bad}", f"/dicomweb/studies/{bad}/metadata",
                         f"/dicomweb/studies/{st}/series/{bad}",
                         f"/dicomweb/studies/{st}/series/{se}/instances/{bad}",
                         f"/dicomweb/studies/{st}/series/{se}/instances/{sop}/frames/{bad}",
                         f"/dicomweb/studies/{st}/series/{se}/instances/{sop}/bulkdata/{bad}",
                         f"/dicomweb/studies/{bad}/series/{se}/instances/{sop}/bulkdata/7FE00010",
                         f"/api/accounts/{bad}/access", f"/api/grants/{bad}/revoke"]
            for path in templates:
                r = c.request("POST" if path.endswith("revoke") else "GET", path)
                assert r.status_code in (400, 401, 403, 404, 405), (path, r.status_code)
                assert not leaks(r.content, needles), path
                assert live.refusal_recorded(r), path


# ------------------------------------------------------------------ time-bounded access


def test_access_ends_with_care_project_and_grant_on_the_live_server(live: Live) -> None:
    p1 = live.patients[1]
    sysadmin = live.people["system_admin"]
    doc = new_person(live.url, sysadmin, "doc_ends", "physician")
    res = new_person(live.url, sysadmin, "res_ends", "researcher")
    tp = new_person(live.url, sysadmin, "tp_ends", "third_party")
    live.people.update(doc_ends=doc, res_ends=res, tp_ends=tp)
    care = as_admin(live, "POST", "/api/care", {"account_id": doc.account_id, "patient": p1.pseudonym})
    proj = as_admin(live, "POST", "/api/projects", {"code": "ends-explicitly", "purpose": "t",
                                                    "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()})
    as_admin(live, "POST", f"/api/projects/{proj['id']}/members", {"account_id": res.account_id})
    as_admin(live, "POST", f"/api/projects/{proj['id']}/cohort", {"study_uids": [p1.studies[0]]})
    grant = as_admin(live, "POST", "/api/grants", {"account_id": tp.account_id, "study_uids": [p1.studies[0]]})
    readers = {"doc_ends": doc, "res_ends": res, "tp_ends": tp}
    seen = {name: own_instance(live, name) for name in readers}
    for name, (st, se, sop) in seen.items():
        with live.client(name) as c:
            assert c.get(f"/dicomweb/studies/{st}/series/{se}/instances/{sop}").status_code == 200
    as_admin(live, "POST", f"/api/care/{care['id']}/end")
    as_admin(live, "POST", f"/api/projects/{proj['id']}/end")
    as_admin(live, "POST", f"/api/grants/{grant['id']}/revoke")
    for name, (st, se, sop) in seen.items():
        with live.client(name) as c:
            for path in wado_paths(st, se, sop)[:6]:
                assert_refused(live, c.get(path), p1.needles())
            r = c.get("/dicomweb/studies")
            assert r.status_code == 200 and r.json() == [], name
    # the same by the clock: a care relationship, project and grant ending in 8 s (set up and
    # checked to be readable before then, also on a loaded machine)
    soon = (datetime.now(UTC) + timedelta(seconds=8)).isoformat()
    timed = as_admin(live, "POST", "/api/care", {"account_id": doc.account_id, "patient": p1.pseudonym,
                                                 "ends_at": soon})
    proj2 = as_admin(live, "POST", "/api/projects", {"code": "ends-by-expiry", "purpose": "t", "expires_at": soon})
    as_admin(live, "POST", f"/api/projects/{proj2['id']}/members", {"account_id": res.account_id})
    as_admin(live, "POST", f"/api/projects/{proj2['id']}/cohort", {"study_uids": [p1.studies[0]]})
    as_admin(live, "POST", "/api/grants", {"account_id": tp.account_id, "study_uids": [p1.studies[0]], "ends_at": soon})
    assert timed["id"]
    seen = {name: own_instance(live, name) for name in readers}
    time.sleep(max(0.0, (datetime.fromisoformat(soon) - datetime.now(UTC)).total_seconds()) + 1)
    for name, (st, se, sop) in seen.items():
        with live.client(name) as c:
            assert_refused(live, c.get(f"/dicomweb/studies/{st}/series/{se}/instances/{sop}"), p1.needles())
            assert c.get("/dicomweb/studies").json() == [], name


# ------------------------------------------------------------------ DIMSE


def dcmtk(tool: str, live: Live, aet: str, keys: list[str], *extra: str, out=None) -> str:
    cmd = [tool, "-v", "-S", "-aet", aet, "-aec", "SAFEPACS", *extra]
    for k in keys:
        cmd += ["-k", k]
    if out is not None:
        cmd += ["-od", str(out)]
    cmd += ["127.0.0.1", str(live.dicom_port)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return p.stdout + p.stderr


def _dimse_refusals(live: Live, op: str) -> int:
    return sum(1 for e in live.entries() if e.get("route") == op and e.get("outcome", 0) != 0)


@needs_dcmtk
def test_dimse_spoofed_or_unbound_ae_titles_are_refused_and_audited(live: Live, tmp_path) -> None:
    p1, p2 = live.patients[1], live.patients[2]
    find = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientID", "PatientName"]
    ok = dcmtk("findscu", live, "SVCSCU", find)  # control: the bound service account finds both
    assert p1.studies[0] in ok and p2.studies[0] in ok
    needles = p1.needles() | p2.needles()
    for aet in ("REMOTESCU", "NOBODY", "SAFEPACS"):
        before = {op: _dimse_refusals(live, op) for op in ("C-FIND", "C-GET", "C-MOVE")}
        text = dcmtk("findscu", live, aet, find)
        assert REFUSED_0124.search(text), aet
        assert not {n for n in needles if n in text}
        got = tmp_path / aet
        got.mkdir()
        text = dcmtk("getscu", live, aet, ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={p2.studies[0]}"], out=got)
        assert not any(got.iterdir()), "C-GET delivered objects to a caller without an account"
        assert REFUSED_0124.search(text), aet
        assert not {n for n in needles if n in text}
        text = dcmtk("movescu", live, aet, ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={p2.studies[0]}"],
                     "-aem", "OPENDEST")
        # pynetdicom sends its own failure code for C-MOVE; what counts: a final failure
        assert re.search(r"Final Move Response \((Failed|Refused)", text) or REFUSED_0124.search(text), aet
        assert live.moved is None or not any(live.moved.iterdir()), "C-MOVE delivered objects"
        after = {op: _dimse_refusals(live, op) for op in ("C-FIND", "C-GET", "C-MOVE")}
        assert all(after[op] > before[op] for op in after), (aet, before, after)


@needs_dcmtk
def test_dimse_c_move_to_a_destination_bound_to_another_caller_is_refused(live: Live) -> None:
    before = _dimse_refusals(live, "C-MOVE")
    text = dcmtk("movescu", live, "SVCSCU", ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={live.patients[2].studies[0]}"],
                 "-aem", "OTHERDEST")
    assert "Received Final Move Response (Refused: MoveDestinationUnknown)" in text
    assert "Sub-Operations Complete" not in text or "Completed Suboperations : 0" in text
    assert _dimse_refusals(live, "C-MOVE") > before
    assert live.moved is None or not any(live.moved.iterdir())
