"""`safepacs audit verify/export/proof` on a data dir, and offline from an export."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from safepacs.audit import merkle
from safepacs.audit.heads import load_public_key
from safepacs.audit.log import AuditLog
from safepacs.audit.witness import FileWitness
from safepacs.cli import app
from safepacs.cli_audit import WITNESS_FILE
from safepacs.config import Settings
from safepacs.index import db
from tests.audit.conftest import make_event

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    settings = Settings(data_dir=d)
    settings.save()
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    with AuditLog(engine, d / "keys", background=False, witnesses=[FileWitness(d / WITNESS_FILE)]) as log:
        for i in range(20):
            log.record(make_event(i))
            if i % 6 == 5:
                log.flush()
    yield d, engine
    engine.dispose()


def test_verify_passes_then_names_the_first_bad_index(data_dir):
    d, engine = data_dir
    r = runner.invoke(app, ["audit", "verify", "--data-dir", str(d)])
    assert r.exit_code == 0, r.output
    assert "OK: 20 entries" in r.output
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_entries WHERE idx >= 15"))
        conn.execute(text("DELETE FROM audit_heads WHERE size > 15"))
    r = runner.invoke(app, ["audit", "verify", "--data-dir", str(d)])  # the witness file is found
    assert r.exit_code == 1
    assert "first bad index 15" in r.output


def test_export_verifies_offline_with_only_the_public_key(data_dir, tmp_path):
    d, engine = data_dir
    export = tmp_path / "trail.json"
    pub = tmp_path / "auditor.pub"
    pub.write_bytes((d / "keys" / "audit-signing.pub").read_bytes())
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = runner.invoke(app, ["audit", "export", "--data-dir", str(d), "--out", str(blocker / "trail.json")])
    assert r.exit_code == 2 and "cannot write the export there" in " ".join(r.output.split())
    assert runner.invoke(app, ["audit", "export", "--data-dir", str(d), "--out", str(export)]).exit_code == 0
    r = runner.invoke(app, ["audit", "verify", "--export", str(export), "--public-key", str(pub)])
    assert r.exit_code == 0, r.output
    doc = json.loads(export.read_text())
    doc["entries"][3], doc["entries"][4] = doc["entries"][4], doc["entries"][3]
    doc["entries"][3]["index"], doc["entries"][4]["index"] = 3, 4
    export.write_text(json.dumps(doc))
    r = runner.invoke(app, ["audit", "verify", "--export", str(export), "--public-key", str(pub)])
    assert r.exit_code == 1 and "first bad index 3" in r.output


def test_proof_command_prints_a_proof_that_verifies(data_dir):
    d, engine = data_dir
    r = runner.invoke(app, ["audit", "proof", "--data-dir", str(d), "7"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    with engine.connect() as conn:
        leaves = [merkle.leaf_hash(bytes(x[0])) for x in conn.execute(text("SELECT entry FROM audit_entries ORDER BY idx"))]
    assert merkle.verify_inclusion(7, 20, leaves[7], [bytes.fromhex(p) for p in doc["proof"]], merkle.root(leaves))
    assert load_public_key(d / "keys" / "audit-signing.pub")


def test_usage_errors_exit_2(tmp_path):
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 2
    assert runner.invoke(app, ["audit", "verify", "--export", str(tmp_path / "x.json")]).exit_code == 2
    assert runner.invoke(app, ["audit", "verify", "--data-dir", str(tmp_path)]).exit_code == 2
