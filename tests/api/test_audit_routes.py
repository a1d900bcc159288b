"""The audit router with stub principals: patients see only their own lines, the auditor's
queue gets appeals with proofs, alerts can be worked, proofs verify."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from safepacs.api.audit_routes import PatientCaller, audit_router
from safepacs.audit import merkle
from safepacs.audit.anomaly import Alert, AlertStore
from safepacs.audit.events import MemorySink
from safepacs.audit.log import AuditLog
from safepacs.audit.service import AuditService
from safepacs.index import db
from safepacs.index.models import Patient, Study
from tests.audit.conftest import make_event


class Who:
    def __init__(self, username: str, role: str) -> None:
        self.username, self.role = username, role


def auditor(x_role: str = Header("")) -> Who:  # stub: the lead plugs the access layer in
    if x_role != "security_auditor":
        raise HTTPException(403, "auditors only")
    return Who("aud", "security_auditor")


def patient(x_patient: str = Header("")) -> PatientCaller:
    if not x_patient:
        raise HTTPException(401, "who are you")
    return PatientCaller(x_patient, username="pt")


@pytest.fixture
def client(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'i.sqlite'}")
    db.upgrade(engine)
    with Session(engine) as s, s.begin():
        for p in ("PSNA", "PSNB"):
            row = Patient(patient_id=p, patient_name="", birth_date="", sex="")
            s.add(row)
            s.flush()
            s.add(Study(study_uid=f"2.25.{ord(p[-1])}", patient_pk=row.pk))
    log = AuditLog(engine, tmp_path / "keys", background=False)
    for i in range(6):
        log.record(make_event(i, patient="", study=f"2.25.{65 + i % 2}"))  # A: 0, 2, 4  B: 1, 3, 5
    log.flush()
    AlertStore(engine).save(Alert("vip", "medium", "reader1", "PSNA", "access to a VIP-flagged patient"))
    service = AuditService(engine, audit=MemorySink())
    app = FastAPI()
    app.include_router(audit_router(service, auditor_principal=auditor, patient_principal=patient,
                                    public_key=log.public_key))
    yield TestClient(app), log
    log.close()
    engine.dispose()


AUD = {"x-role": "security_auditor"}


def test_patient_routes(client):
    c, _ = client
    assert [x["index"] for x in c.get("/api/me/access-log", headers={"x-patient": "PSNA"}).json()] == [0, 2, 4]
    assert [x["index"] for x in c.get("/api/me/access-log", headers={"x-patient": "PSNB"}).json()] == [1, 3, 5]
    assert c.get("/api/me/access-log").status_code == 401
    r = c.post("/api/me/access-log/2/appeal", json={"statement": "who was this?"}, headers={"x-patient": "PSNA"})
    assert r.status_code == 201 and r.json()["status"] == "open"
    assert c.post("/api/me/access-log/3/appeal", json={}, headers={"x-patient": "PSNA"}).status_code == 404
    assert [a["index"] for a in c.get("/api/me/appeals", headers={"x-patient": "PSNA"}).json()] == [2]
    assert c.get("/api/me/appeals", headers={"x-patient": "PSNB"}).json() == []


def test_auditor_routes(client):
    c, log = client
    c.post("/api/me/access-log/4/appeal", json={"statement": "?"}, headers={"x-patient": "PSNA"})
    assert c.get("/api/audit/appeals", headers={"x-patient": "PSNA"}).status_code == 403
    queue = c.get("/api/audit/appeals", headers=AUD).json()
    assert len(queue) == 1 and queue[0]["evidence"]["event"]["study_uid"] == "2.25.65"
    r = c.post(f"/api/audit/appeals/{queue[0]['id']}", json={"status": "under-review"}, headers=AUD)
    assert r.json()["status"] == "under-review"
    assert c.post(f"/api/audit/appeals/{queue[0]['id']}", json={"status": "bogus"}, headers=AUD).status_code == 409
    alerts = c.get("/api/audit/alerts", headers=AUD).json()
    assert [a["rule"] for a in alerts] == ["vip"]
    assert c.post(f"/api/audit/alerts/{alerts[0]['id']}", json={"status": "closed"}, headers=AUD).status_code == 200
    head = c.get("/api/audit/heads/latest", headers=AUD).json()
    assert head["size"] == 6
    p = c.get("/api/audit/proofs/inclusion", params={"index": 3}, headers=AUD).json()
    assert merkle.verify_inclusion(3, 6, merkle.leaf_hash(log.entry(3)), [bytes.fromhex(x) for x in p["proof"]],
                                   bytes.fromhex(head["root"]))
    cp = c.get("/api/audit/proofs/consistency", params={"first": 2, "second": 6}, headers=AUD).json()
    first = bytes.fromhex(c.get("/api/audit/entries", params={"limit": 2}, headers=AUD).json()[0]["leaf_hash"])
    assert len(cp["proof"]) == len(merkle.consistency_proof(2, 6, lambda s, e: first))
    assert c.get("/api/audit/proofs/inclusion", params={"index": 60}, headers=AUD).status_code == 404
    assert c.get("/api/audit/public-key", headers=AUD).text.startswith("-----BEGIN PUBLIC KEY-----")
    assert len(c.get("/api/audit/entries", params={"start": 4}, headers=AUD).json()) == 2
