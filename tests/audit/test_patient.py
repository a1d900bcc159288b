"""A patient sees exactly the accesses to their own studies; appeals carry proofs."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from safepacs.audit import events as ev
from safepacs.audit import merkle
from safepacs.audit.events import MemorySink
from safepacs.audit.heads import head_is_signed
from safepacs.audit.log import AuditLog
from safepacs.audit.patient import AppealError, Appeals, PatientLogPolicy, access_log
from safepacs.index.models import Patient, Study
from tests.audit.conftest import make_event


@pytest.fixture
def world(engine, tmp_path):
    """Two patients with two studies each; accesses to both, plus one unrelated event."""
    with Session(engine) as s, s.begin():
        for p in ("PSNA", "PSNB"):
            row = Patient(patient_id=p, patient_name="", birth_date="", sex="")
            s.add(row)
            s.flush()
            for k in (1, 2):
                s.add(Study(study_uid=f"2.25.{p}{k}".replace("PSN", "9"), patient_pk=row.pk))
    log = AuditLog(engine, tmp_path / "keys", background=False)
    # the access layer's decide events carry the study only; others carry the pseudonym too
    log.record(make_event(0, patient="", study="2.25.9A1", user="dr.one", detail={"organisation": "General", "department": "ED", "basis": "care"}))
    log.record(make_event(1, patient="PSNB", study="2.25.9B1", user="dr.two"))
    log.record(make_event(2, patient="PSNA", study="2.25.9A2", user="dr.three", role="radiologist", outcome=4, reason="no basis"))
    log.record(make_event(3, patient="PSNB", study="2.25.9B2", user="dr.one"))
    log.record(make_event(4, patient="PSNA", event_id=ev.SECURITY_ALERT, route="anomaly:vip"))
    log.record(make_event(5, patient="PSNZ", study="2.25.777", user="dr.four"))
    log.flush()
    yield log
    log.close()


def test_patient_sees_exactly_their_own_accesses(engine, world):
    a = access_log(engine, "PSNA")
    b = access_log(engine, "PSNB")
    assert [x.index for x in a] == [0, 2]
    assert [x.index for x in b] == [1, 3]
    assert a[0].organisation == "General" and a[0].department == "ED" and a[0].role == "physician"
    assert a[1].outcome == "refused" and a[1].role == "radiologist"
    assert all(x.reader == "" for x in a + b)  # default policy: role only
    assert [x.reader for x in access_log(engine, "PSNA", PatientLogPolicy(show_reader_names=True))] == ["dr.one", "dr.three"]
    assert [x.index for x in access_log(engine, "PSNA", PatientLogPolicy(include_refused=False))] == [0]
    assert access_log(engine, "") == [] and access_log(engine, "PSNQ") == []


def test_appeal_holds_a_proof_that_verifies_and_reaches_the_auditor(engine, world):
    sink = MemorySink()
    appeals = Appeals(engine, audit=sink)
    appeal = appeals.file("PSNA", 2, "I never consented to this")
    proof = appeal.evidence["proof"]
    leaf = bytes.fromhex(proof["leaf_hash"])
    assert leaf == merkle.leaf_hash(world.entry(2))
    assert merkle.verify_inclusion(2, proof["head"]["size"], leaf, [bytes.fromhex(p) for p in proof["proof"]],
                                   bytes.fromhex(proof["head"]["root"]))
    from safepacs.audit.heads import SignedHead
    assert head_is_signed(SignedHead.from_dict(proof["head"]), world.public_key)
    assert [a.id for a in appeals.queue()] == [appeal.id]
    assert appeals.for_patient("PSNB") == []
    appeals.update(appeal.id, "under-review", user="auditor1", role="security_auditor")
    done = appeals.update(appeal.id, "resolved", "access was refused; nothing was shown", user="auditor1")
    seen = appeals.for_patient("PSNA")[0].for_patient()
    assert seen["status"] == "resolved" and seen["note"] == done.note
    assert appeals.queue() == []
    with pytest.raises(AppealError):
        appeals.update(appeal.id, "open")
    assert [e.reason for e in sink.events] == ["appeal filed", "appeal under-review", "appeal resolved"]
    assert all("consented" not in e.to_json() for e in sink.events)  # the statement stays out of events


@pytest.mark.parametrize("index", [1, 3, 4, 5, 99])
def test_a_patient_cannot_appeal_someone_elses_line_or_an_alert(engine, world, index):
    with pytest.raises(AppealError, match="no such line"):
        Appeals(engine, audit=MemorySink()).file("PSNA", index, "x")
