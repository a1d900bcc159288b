"""The log appends, signs, survives a reopen, and proves inclusion/consistency against
roots computed independently from the stored entries."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest
from sqlalchemy import text

from safepacs.audit import merkle
from safepacs.audit.heads import head_is_signed, load_public_key
from safepacs.audit.log import NODE_LEVEL, AuditLog
from safepacs.audit.witness import FileWitness, read_witness
from tests.audit.conftest import make_event


def stored_leaves(engine) -> list[bytes]:
    with engine.connect() as conn:
        return [merkle.leaf_hash(bytes(r[0])) for r in conn.execute(text("SELECT entry FROM audit_entries ORDER BY idx"))]


def test_appended_events_are_signed_and_key_files_have_the_right_modes(engine, tmp_path):
    keys = tmp_path / "keys"
    with AuditLog(engine, keys, background=False) as log:
        for i in range(5):
            log.record(make_event(i))
        log.flush()
        head = log.latest_head()
    assert head is not None and head.size == 5
    assert stat.S_IMODE(os.stat(keys / "audit-signing.key").st_mode) == 0o600
    pub = load_public_key(keys / "audit-signing.pub")
    assert head_is_signed(head, pub)
    assert head.root == merkle.root(stored_leaves(engine))
    with engine.connect() as conn:  # sign_every=1: a head for every size
        assert [r[0] for r in conn.execute(text("SELECT size FROM audit_heads ORDER BY size"))] == [1, 2, 3, 4, 5]
        entry = json.loads(conn.execute(text("SELECT entry FROM audit_entries WHERE idx = 3")).scalar())
    assert entry["request_id"] == "r3"


def test_reopen_continues_the_same_tree(engine, tmp_path):
    with AuditLog(engine, tmp_path / "k", background=False, sign_every=50) as log:
        for i in range(300):
            log.record(make_event(i))
    with AuditLog(engine, tmp_path / "k", background=False, sign_every=50) as log:
        assert log.size == 300
        for i in range(300, 777):
            log.record(make_event(i))
        log.flush()
        assert log.root() == merkle.root(stored_leaves(engine))
    with engine.connect() as conn:
        levels = {r[0] for r in conn.execute(text("SELECT level FROM audit_nodes"))}
    assert levels == {NODE_LEVEL, NODE_LEVEL + 1}  # 777 leaves: 3 subtrees of 256, 1 of 512


def test_inclusion_and_consistency_proofs_verify_against_independent_roots(engine, tmp_path):
    with AuditLog(engine, tmp_path / "k", background=False, sign_every=100, batch_size=97) as log:
        for i in range(1100):
            log.record(make_event(i))
        log.flush()
        leaves = stored_leaves(engine)
        for index in (0, 1, 255, 256, 511, 700, 1023, 1024, 1099):
            p = log.inclusion_proof(index)
            assert p.head.size == 1100
            assert merkle.verify_inclusion(index, 1100, leaves[index], p.proof, merkle.root(leaves))
            older = log.inclusion_proof(index, 1100 if index >= 1000 else 1000)
            assert merkle.verify_inclusion(index, older.head.size, leaves[index], older.proof, merkle.root(leaves[:older.head.size]))
        for first, second in ((1, 1100), (300, 1000), (256, 1024), (999, 1100), (1100, 1100)):
            proof = log.consistency_proof(first, second)
            assert merkle.verify_consistency(first, second, merkle.root(leaves[:first]), merkle.root(leaves[:second]), proof)
        assert not merkle.verify_inclusion(5, 1100, leaves[6], log.inclusion_proof(5).proof, merkle.root(leaves))
        with pytest.raises(ValueError):
            log.inclusion_proof(5, 1050)  # no signed head at that size


def test_background_writer_and_threads(engine, tmp_path):
    with AuditLog(engine, tmp_path / "k", flush_interval=0.01, batch_size=64) as log:
        def work(t: int) -> None:
            for i in range(200):
                log.record(make_event(t * 1000 + i))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    with engine.connect() as conn:
        ids = sorted(json.loads(r[0])["request_id"] for r in conn.execute(text("SELECT entry FROM audit_entries")))
    assert ids == sorted(f"r{t * 1000 + i}" for t in range(4) for i in range(200))


def test_witness_receives_the_newest_head_of_each_batch(engine, tmp_path):
    w = tmp_path / "witness.jsonl"
    with AuditLog(engine, tmp_path / "k", background=False, witnesses=[FileWitness(w)]) as log:
        for i in range(10):
            log.record(make_event(i))
            if i % 3 == 2:
                log.flush()
    heads, bad = read_witness(w)
    assert bad == [] and [h.size for h in heads] == [3, 6, 9, 10]


def test_two_writers_on_one_database_do_not_fork_the_tree(engine, tmp_path):
    a = AuditLog(engine, tmp_path / "k", background=False)
    b = AuditLog(engine, tmp_path / "k", background=False)
    a.record(make_event(1))
    a.flush()
    b.record(make_event(2))  # b still believes the log is empty
    b.flush()
    a.record(make_event(3))
    a.flush()
    assert a.size == 3 and a.root() == merkle.root(stored_leaves(engine))


def test_fails_closed_while_the_database_cannot_be_written_and_loses_nothing(engine, tmp_path):
    from safepacs.audit.log import AuditUnavailable

    log = AuditLog(engine, tmp_path / "k", background=False)
    log.record(make_event(0), wait=True)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_heads RENAME TO audit_heads_away"))
    log.record(make_event(1))
    with pytest.raises(AuditUnavailable):
        log.flush()
    with pytest.raises(AuditUnavailable):
        log.record(make_event(2))  # refused: the caller must not go ahead unaudited
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_heads_away RENAME TO audit_heads"))
    log.flush()  # the queued event is written once the database is back
    log.record(make_event(3), wait=True)
    assert log.size == 3
    assert [json.loads(log.entry(i))["request_id"] for i in range(3)] == ["r0", "r1", "r3"]
    log.close()


def _append_from_process(url: str, keys: str, start: int) -> None:
    from safepacs.index import db as db_

    engine = db_.make_engine(url)
    with AuditLog(engine, keys, background=False, batch_size=5) as log:
        for i in range(start, start + 60):
            log.record(make_event(i))
    engine.dispose()


def test_several_processes_append_to_one_log(engine, tmp_path):
    import multiprocessing

    from safepacs.audit.verify import verify_database

    AuditLog(engine, tmp_path / "k", background=False).close()  # creates the key once
    url = str(engine.url)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_from_process, args=(url, str(tmp_path / "k"), 1000 * p)) for p in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with engine.connect() as conn:
        ids = sorted(json.loads(r[0])["request_id"] for r in conn.execute(text("SELECT entry FROM audit_entries")))
    assert len(ids) == 180 and len(set(ids)) == 180
    report = verify_database(engine, load_public_key(tmp_path / "k" / "audit-signing.pub"))
    assert report.ok, report.problems
