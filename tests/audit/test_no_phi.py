"""No audit entry, export, syslog message, witness line, alert or patient view holds a value
of the synthetic answer key, after a corpus went through the archive and was accessed."""

from __future__ import annotations

import json
import ssl

import pytest
from sqlalchemy import select, text

from safepacs.archive import Archive
from safepacs.audit import events as ev
from safepacs.audit.anomaly import AlertStore, AnomalyEngine, AnomalySink
from safepacs.audit.events import AuditEvent
from safepacs.audit.log import AuditLog
from safepacs.audit.patient import Appeals, PatientLogPolicy, access_log
from safepacs.audit.syslog import SyslogSender
from safepacs.audit.verify import write_export
from safepacs.audit.witness import FileWitness
from safepacs.errors import RejectedFile
from safepacs.index.models import Patient, Study
from safepacs.synth import generate
from tests.planted import found_in


@pytest.fixture(scope="module")
def accessed(tmp_path_factory):
    root = tmp_path_factory.mktemp("nophi")
    key = generate(root / "in", 16, 23, small=True)
    (root / "in" / "answer_key.json").unlink()
    arch, _ = Archive.create(root / "archive")
    log = arch.audit.log  # the archive's own trail: its access layer writes into it too
    assert isinstance(log, AuditLog)
    log.witnesses.append(FileWitness(root / "witness.jsonl"))
    for path in sorted((root / "in").rglob("*.dcm")):
        try:
            arch.ingest(path.read_bytes(), source="import")
        except RejectedFile:
            pass
    engine = arch._engine
    with engine.connect() as conn:
        studies = conn.execute(select(Study.study_uid, Patient.patient_id).join(Patient, Patient.pk == Study.patient_pk)).all()
    assert studies
    sender = SyslogSender("127.0.0.1", 9, root / "syslog.spool", ssl_context=ssl.create_default_context(), background=False)
    sink = AnomalySink(log, AnomalyEngine(), AlertStore(engine))
    for n, (study, patient) in enumerate(studies):
        for basis, outcome in (("care", 0), ("break_glass", 0), ("none", 4)):
            e = AuditEvent(ev.INSTANCES_ACCESSED, ev.READ, outcome=outcome, user=f"dr{n}", role="physician",
                           address="10.0.0.9", route="decide:read", study_uid=study, patient=patient,
                           level="identified" if outcome == 0 else "", purpose="treatment",
                           reason="" if outcome == 0 else "no care relationship",
                           detail={"basis": basis, "organisation": "General", "department": "ED"})
            sink.record(e)
            sender.record(e)
    log.flush()
    appeals = Appeals(engine, audit=sink)
    views = []
    for _study, patient in studies:
        lines = access_log(engine, patient, PatientLogPolicy(show_reader_names=True))
        views.append(json.dumps([x.to_dict() for x in lines]))
        views.append(json.dumps(appeals.file(patient, lines[0].index, "please check").to_dict()))
    log.flush()
    out = root / "export.json"
    with open(out, "w") as fh:
        write_export(engine, fh)
    with engine.connect() as conn:
        entries = b"\n".join(bytes(r[0]) for r in conn.execute(text("SELECT entry FROM audit_entries")))
        alerts = "\n".join(r[0] + r[1] for r in conn.execute(text("SELECT summary, events FROM audit_alerts")))
    blob = b"\n".join([
        entries, out.read_bytes(), (root / "syslog.spool").read_bytes(), (root / "witness.jsonl").read_bytes(),
        alerts.encode(), "\n".join(views).encode(),
    ])
    arch.close()
    originals = b"\n".join(p.read_bytes() for p in sorted((root / "in").rglob("*.dcm")))
    return key, blob, len(studies), originals


def test_no_planted_value_in_any_audit_output(accessed):
    key, blob, n, originals = accessed
    assert blob.count(b"decide:read") >= 3 * n  # the outputs are really there
    values = {p.value for p in key.planted if len(p.value) >= 4 and not p.value.strip().isdigit()}
    assert values
    found = sorted(v for v in values if found_in(v.encode("utf-8"), blob))
    assert found == []
    # control: the same search finds most planted values in the original files
    assert sum(v.encode("utf-8") in originals for v in values) > len(values) // 2
