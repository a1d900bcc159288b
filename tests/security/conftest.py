"""A live archive for the attack suite: uvicorn (DICOMweb + /api) and the DIMSE SCP in threads
of the test process, two synthetic patients, and people made and signed in for real.

Every account is created by the system administrator over HTTP with a one-time password,
changed and (for roles that need it) TOTP-enrolled through ``/api/auth/...``; all access is
granted by the security administrator's HTTP API.  The test process keeps the ``Archive``
so it can flush the audit log and read ``audit_entries`` back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyotp
import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session

from safepacs.api import create_app
from safepacs.archive.service import Archive
from safepacs.audit.models import AuditEntry
from safepacs.dimse import start as start_dimse
from safepacs.index.models import Patient, Study
from safepacs.synth import generate
from tests.server_harness import free_port

PASSWORD = "a long synthetic passphrase for attack tests 7"
TOTP_ROLES = ("system_admin", "security_admin", "security_auditor", "physician", "radiologist")


@dataclass
class Person:
    username: str
    role: str
    account_id: int
    token: str
    refresh: str = ""
    secret: str = ""


@dataclass
class PatientData:
    """What the archive stores of one synthetic patient, and what the original held."""

    pseudonym: str
    studies: list[str]  # stored (de-identified) StudyInstanceUIDs
    series: list[tuple[str, str]]  # (study, series)
    instances: list[tuple[str, str, str]]  # (study, series, sop)
    originals: set[str]  # original names, IDs and UIDs from the synth answer key

    def needles(self) -> set[str]:
        """Values that must not appear in a response to someone not entitled to this patient."""
        return {self.pseudonym, *self.studies, *(s for _, s in self.series),
                *(i for _, _, i in self.instances), *self.originals}


@dataclass
class Live:
    url: str
    archive: Archive
    dicom_port: int
    move_port: int
    people: dict[str, Person]
    patients: dict[int, PatientData]
    ids: dict[str, int] = field(default_factory=dict)  # care/project/grant ids made at setup
    moved: Path | None = None  # where the C-MOVE destination (storescp) writes

    def client(self, who: str | None = None, *, token: str | None = None) -> httpx.Client:
        headers = {}
        tok = token if token is not None else (self.people[who].token if who else None)
        if tok is not None:
            headers["Authorization"] = f"Bearer {tok}"
        return httpx.Client(base_url=self.url, timeout=60, headers=headers)

    def entries(self) -> list[dict]:
        """Every audit entry written so far (after a flush), decoded."""
        self.archive.audit.flush()
        with Session(self.archive.access.ctx.engine) as s:
            return [json.loads(e) for e in s.scalars(select(AuditEntry.entry).order_by(AuditEntry.idx))]

    def recorded(self, response: httpx.Response) -> bool:
        """True when the request of ``response`` has an audit entry (any outcome)."""
        rid = response.headers.get("x-request-id", "")
        return bool(rid) and any(e.get("request_id") == rid for e in self.entries())

    def refusal_recorded(self, response: httpx.Response) -> bool:
        """True when the request of ``response`` has an audit entry with outcome != 0."""
        rid = response.headers.get("x-request-id", "")
        return bool(rid) and any(e.get("request_id") == rid and e.get("outcome", 0) != 0
                                 for e in self.entries())


def first_sign_in(http: httpx.Client, username: str, one_time: str, role: str) -> Person:
    """The whole first-login flow over HTTP: change the one-time password, enrol TOTP if the
    role needs it, sign in with password (+ code)."""
    r = http.post("/api/auth/login", json={"username": username, "password": one_time})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "password_change_required"
    setup = {"Authorization": f"Bearer {r.json()['setup_token']}"}
    r = http.post("/api/auth/password", json={"old_password": one_time, "new_password": PASSWORD}, headers=setup)
    assert r.status_code == 200, r.text
    r = http.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    secret = ""
    if role in TOTP_ROLES:
        assert r.json()["status"] == "totp_enrolment_required"
        setup = {"Authorization": f"Bearer {r.json()['setup_token']}"}
        r = http.post("/api/auth/totp", json={}, headers=setup)
        assert r.status_code == 200, r.text
        secret = pyotp.parse_uri(r.json()["provisioning_uri"]).secret
        now = int(time.time())
        # confirm with the previous step's code, sign in with this step's (no code twice)
        r = http.post("/api/auth/totp", json={"code": pyotp.TOTP(secret).at(now - 30)}, headers=setup)
        assert r.status_code == 200, r.text
        r = http.post("/api/auth/login", json={"username": username, "password": PASSWORD,
                                               "totp": pyotp.TOTP(secret).at(now)})
        assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok", body["status"]
    me = http.get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    return Person(username, role, me["account_id"], body["access_token"], body["refresh_token"], secret)


def new_person(live_url: str, sysadmin: Person, username: str, role: str) -> Person:
    """An account made by the system administrator over HTTP, then signed in for the first time."""
    with httpx.Client(base_url=live_url, timeout=60) as http:
        r = http.post("/api/accounts", json={"username": username, "role": role},
                      headers={"Authorization": f"Bearer {sysadmin.token}"})
        assert r.status_code == 201, r.text
        return first_sign_in(http, username, r.json()["one_time_password"], role)


def as_admin(live: Live, method: str, path: str, body: dict | None = None, who: str = "security_admin") -> dict:
    with live.client(who) as c:
        r = c.request(method, path, json=body)
    assert r.status_code in (200, 201), (path, r.status_code, r.text)
    return r.json()


def _patients(archive: Archive, key, stored: list[tuple[str, object]]) -> dict[int, PatientData]:
    by_orig: dict[str, list[tuple[str, object]]] = {}
    for rel, st in stored:
        by_orig.setdefault(key.files[rel].patient_id, []).append((rel, st))
    out: dict[int, PatientData] = {}
    for n, (orig_id, items) in enumerate(sorted(by_orig.items(), key=lambda kv: kv[1][0][0]), start=1):
        rels = {rel for rel, _ in items}
        # identifiers and UIDs of the patient's files, and the patient's own name (each PN
        # group: DICOM JSON writes them apart); staff names are shared across patients
        originals = {p.value for p in key.planted
                     if p.file in rels and p.kind in ("id", "resident_id", "uid") and len(p.value) >= 6}
        originals |= {group for p in key.planted if p.file in rels and p.location.endswith("PatientName")
                      and "^" in p.value for group in p.value.split("=") if len(group) >= 3}
        originals.add(orig_id)
        with Session(archive.access.ctx.engine) as s:
            pseudonym = s.scalar(select(Patient.patient_id).join(Study, Study.patient_pk == Patient.pk)
                                 .where(Study.study_uid == items[0][1].study_uid))
        out[n] = PatientData(
            pseudonym=pseudonym,
            studies=sorted({st.study_uid for _, st in items}),
            series=sorted({(st.study_uid, st.series_uid) for _, st in items}),
            instances=sorted({(st.study_uid, st.series_uid, st.sop_instance_uid) for _, st in items}),
            originals=originals)
    return out


@pytest.fixture(scope="session")
def live(tmp_path_factory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("security")
    key = generate(root / "in", 8, 7, small=True)  # seed 7: patient P0001 (4 studies), P0002 (1)
    archive, admins = Archive.create(root / "data")
    stored = [(str(f.relative_to(root / "in")), archive.ingest(f.read_bytes(), source="test"))
              for f in sorted((root / "in").rglob("*.dcm"))]
    patients = _patients(archive, key, stored)
    assert len(patients) == 2, "the corpus must hold exactly two patients"

    port, dicom_port, move_port = free_port(), free_port(), free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(archive), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    scp = start_dimse(
        archive, host="127.0.0.1", port=dicom_port, ae_title="SAFEPACS",
        allowed_callers=[
            {"ae_title": "SVCSCU", "host": "127.0.0.1", "account": "svc"},
            {"ae_title": "REMOTESCU", "host": "10.20.30.40", "account": "svc"},
            {"ae_title": "*", "host": "127.0.0.1"},  # admitted, but without an account
        ],
        move_destinations={
            "SVCDEST": {"host": "127.0.0.1", "port": move_port, "callers": ["SVCSCU"]},
            "OTHERDEST": {"host": "127.0.0.1", "port": move_port, "callers": ["OTHERSCU"]},
            # a destination the spoofers may name, so that C-MOVE reaches the account check
            "OPENDEST": {"host": "127.0.0.1", "port": move_port, "callers": ["REMOTESCU", "NOBODY", "SAFEPACS"]},
        })
    # a real C-MOVE destination, to show that nothing arrives there
    (root / "moved").mkdir()
    storescp = subprocess.Popen(["storescp", "-od", str(root / "moved"), str(move_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if shutil.which("storescp") else None
    try:
        people: dict[str, Person] = {}
        with httpx.Client(base_url=url, timeout=60) as http:
            for role, (username, one_time) in admins.items():
                people[role] = first_sign_in(http, username, one_time, role)
        sysadmin = people["system_admin"]
        for name, role in (("doc_a", "physician"), ("researcher", "researcher"),
                           ("third", "third_party"), ("patient2", "patient")):
            people[name] = new_person(url, sysadmin, name, role)
        # the service account: API token from the system administrator
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {sysadmin.token}"}) as http:
            r = http.post("/api/accounts", json={"username": "svc", "role": "service"})
            assert r.status_code == 201, r.text
            svc_id = r.json()["account"]["id"]
            r = http.post(f"/api/accounts/{svc_id}/tokens", json={"name": "attack-suite"})
            assert r.status_code == 201, r.text
            people["svc"] = Person("svc", "service", svc_id, r.json()["token"])
        live = Live(url, archive, dicom_port, move_port, people, patients, moved=root / "moved")
        p1, p2 = patients[1], patients[2]
        live.ids["care"] = as_admin(live, "POST", "/api/care", {
            "account_id": people["doc_a"].account_id, "patient": p1.pseudonym})["id"]
        proj = as_admin(live, "POST", "/api/projects", {
            "code": "tb-cohort", "purpose": "synthetic research",
            "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat()})
        live.ids["project"] = proj["id"]
        as_admin(live, "POST", f"/api/projects/{proj['id']}/members", {"account_id": people["researcher"].account_id})
        as_admin(live, "POST", f"/api/projects/{proj['id']}/cohort", {"study_uids": [p1.studies[0]]})
        grant = as_admin(live, "POST", "/api/grants", {"account_id": people["third"].account_id,
                                                       "study_uids": [p1.studies[0]]})
        live.ids["grant"] = grant["id"]
        as_admin(live, "POST", "/api/patients/link", {"account_id": people["patient2"].account_id,
                                                      "patient": p2.pseudonym})
        as_admin(live, "POST", "/api/grants/service", {"account_id": svc_id})
        yield live
    finally:
        if storescp is not None:
            storescp.terminate()
            storescp.wait(10)
        scp.shutdown()
        server.should_exit = True
        thread.join(10)
        archive.close()

