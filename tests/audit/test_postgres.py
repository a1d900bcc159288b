"""The log on PostgreSQL: appends from two writers, proofs, and tamper detection."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from safepacs.audit import merkle
from safepacs.audit.log import AuditLog
from safepacs.audit.verify import verify_database
from safepacs.index import db
from tests.audit.conftest import make_event


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_log_on_postgresql(database_url, tmp_path):
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    try:
        a = AuditLog(engine, tmp_path / "k", background=False, batch_size=100)
        b = AuditLog(engine, tmp_path / "k", background=False)
        for i in range(300):
            a.record(make_event(i))
        a.flush()
        b.record(make_event(999))  # b has not seen a's entries: it catches up on conflict
        b.flush()
        for i in range(300, 320):
            a.record(make_event(i))
        a.close()
        b.close()
        with engine.connect() as conn:
            leaves = [merkle.leaf_hash(bytes(r[0])) for r in conn.execute(text("SELECT entry FROM audit_entries ORDER BY idx"))]
        assert len(leaves) == 321
        p = a.inclusion_proof(256)
        assert merkle.verify_inclusion(256, 321, leaves[256], p.proof, merkle.root(leaves))
        assert verify_database(engine, a.public_key).ok
        with engine.begin() as conn:
            conn.execute(text("UPDATE audit_entries SET idx = -1 WHERE idx = 40"))
            conn.execute(text("UPDATE audit_entries SET idx = 40 WHERE idx = 41"))
            conn.execute(text("UPDATE audit_entries SET idx = 41 WHERE idx = -1"))
        report = verify_database(engine, a.public_key)
        assert report.first_bad_index == 40 and report.exact
    finally:
        engine.dispose()
