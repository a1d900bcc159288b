"""Every kind of tampering done directly in the database is found, with the first bad index."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from safepacs.audit import merkle
from safepacs.audit.heads import message
from safepacs.audit.log import AuditLog
from safepacs.audit.verify import read_export, verify, verify_database, write_export
from safepacs.audit.witness import FileWitness, read_witness
from tests.audit.conftest import make_event

N = 30


@pytest.fixture
def trail(engine, tmp_path):
    """A log of N events written in a few batches, with a file witness."""
    witness = tmp_path / "witness.jsonl"
    log = AuditLog(engine, tmp_path / "keys", background=False, witnesses=[FileWitness(witness)])
    for i in range(N):
        log.record(make_event(i))
        if i % 7 == 6:
            log.flush()
    log.close()
    return engine, log.public_key, witness


def check(engine, pub, witness=None):
    heads = read_witness(witness)[0] if witness else ()
    return verify_database(engine, pub, witness=heads)


def entry(engine, idx: int) -> bytes:
    with engine.connect() as conn:
        return bytes(conn.execute(text("SELECT entry FROM audit_entries WHERE idx = :i"), {"i": idx}).scalar())


def rewrite(engine, idx: int, data: bytes, *, leaf: bool) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET entry = :e WHERE idx = :i"), {"e": data, "i": idx})
        if leaf:
            conn.execute(text("UPDATE audit_entries SET leaf_hash = :h WHERE idx = :i"), {"h": merkle.leaf_hash(data), "i": idx})


def edited(engine, idx: int) -> bytes:
    doc = json.loads(entry(engine, idx))
    doc["user"] = "someone.else"
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def test_untouched_trail_verifies(trail):
    engine, pub, witness = trail
    report = check(engine, pub, witness)
    assert report.ok, report.problems
    assert report.size == N and report.heads_checked == N and report.witness_heads_checked == 5


def test_updated_row_is_found(trail):
    engine, pub, _ = trail
    rewrite(engine, 11, edited(engine, 11), leaf=False)
    report = check(engine, pub)
    assert not report.ok and report.first_bad_index == 11 and report.exact


def test_updated_row_with_recomputed_leaf_hash_is_found(trail):
    engine, pub, _ = trail
    rewrite(engine, 17, edited(engine, 17), leaf=True)
    report = check(engine, pub)
    assert report.first_bad_index == 17 and report.exact


def test_edited_lookup_column_is_found(trail):
    engine, pub, _ = trail
    with engine.begin() as conn:  # hide an access from a patient's log
        conn.execute(text("UPDATE audit_entries SET patient = 'PSN9999' WHERE idx = 4"))
    assert check(engine, pub).first_bad_index == 4


def test_deleted_row_is_found(trail):
    engine, pub, _ = trail
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_entries WHERE idx = 9"))
    assert check(engine, pub).first_bad_index == 9


def test_deleted_row_with_renumbering_is_found(trail):
    engine, pub, _ = trail
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_entries WHERE idx = 9"))
        for i in range(10, N):
            conn.execute(text("UPDATE audit_entries SET idx = :n WHERE idx = :i"), {"n": i - 1, "i": i})
        conn.execute(text("DELETE FROM audit_heads WHERE size = :s"), {"s": N})
    report = check(engine, pub)
    assert report.first_bad_index == 9 and report.exact


def test_inserted_row_is_found(trail):
    engine, pub, _ = trail
    data = make_event(999).to_json().encode()
    with engine.begin() as conn:
        for i in range(N - 1, 12, -1):
            conn.execute(text("UPDATE audit_entries SET idx = :n WHERE idx = :i"), {"n": i + 1, "i": i})
        conn.execute(
            text("INSERT INTO audit_entries (idx, entry, leaf_hash, patient, study_uid) VALUES (13, :e, :h, :p, :s)"),
            {"e": data, "h": merkle.leaf_hash(data), "p": "PSN0004", "s": "2.25.1004"},
        )
    assert check(engine, pub).first_bad_index == 13


def test_row_appended_after_the_newest_head_is_found(trail):
    engine, pub, _ = trail
    data = make_event(999).to_json().encode()
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO audit_entries (idx, entry, leaf_hash, patient, study_uid) VALUES (:i, :e, :h, :p, :s)"),
            {"i": N, "e": data, "h": merkle.leaf_hash(data), "p": "PSN0004", "s": "2.25.1004"},
        )
    assert check(engine, pub).first_bad_index == N


def test_swapped_rows_are_found(trail):
    engine, pub, _ = trail
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET idx = -1 WHERE idx = 8"))
        conn.execute(text("UPDATE audit_entries SET idx = 8 WHERE idx = 21"))
        conn.execute(text("UPDATE audit_entries SET idx = 21 WHERE idx = -1"))
    report = check(engine, pub)
    assert report.first_bad_index == 8 and report.exact


def test_truncated_tail_is_found_by_the_witness(trail):
    engine, pub, witness = trail
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_entries WHERE idx >= 24"))
        conn.execute(text("DELETE FROM audit_heads WHERE size > 24"))
    assert check(engine, pub).ok  # the database alone cannot tell...
    report = check(engine, pub, witness)  # ...the witness can
    assert report.first_bad_index == 24 and report.exact


def test_rewrite_and_resign_with_a_wrong_key_is_found(trail):
    engine, pub, witness = trail
    wrong = Ed25519PrivateKey.generate()
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT idx, entry FROM audit_entries ORDER BY idx")).all()
        leaves = []
        for idx, data in rows:
            doc = json.loads(data)
            if idx >= 10:
                doc["user"] = "nobody"
            new = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
            leaves.append(merkle.leaf_hash(new))
            conn.execute(text("UPDATE audit_entries SET entry = :e, leaf_hash = :h WHERE idx = :i"),
                         {"e": new, "h": leaves[-1], "i": idx})
        for (size, ts) in conn.execute(text("SELECT size, timestamp FROM audit_heads")).all():
            root = merkle.root(leaves[:size])
            conn.execute(text("UPDATE audit_heads SET root = :r, signature = :s WHERE size = :n"),
                         {"r": root, "s": wrong.sign(message(size, root, ts)), "n": size})
    report = check(engine, pub)
    assert not report.ok and report.first_bad_index == 0  # no head is signed by the real key
    # the witness (heads at 7, 14, 21, 28, 30) vouches for the first 7 entries; from index 7 on
    # nothing validly signed covers the entries
    report = check(engine, pub, witness)
    assert report.first_bad_index == 7


def test_sparse_heads_bound_the_damage_to_its_signed_interval(engine, tmp_path):
    log = AuditLog(engine, tmp_path / "keys", background=False, sign_every=8, batch_size=1000)
    for i in range(40):
        log.record(make_event(i))
    log.close()
    rewrite(engine, 19, edited(engine, 19), leaf=True)
    report = check(engine, log.public_key)
    assert report.first_bad_index == 16 and not report.exact


def test_export_verifies_offline_and_detects_a_changed_byte(trail, tmp_path):
    engine, pub, _ = trail
    out = tmp_path / "export.json"
    with open(out, "w") as fh:
        assert write_export(engine, fh) == N
    entries, heads = read_export(out)
    assert verify(entries, heads, pub).ok
    doc = json.loads(out.read_text())
    import base64
    raw = bytearray(base64.b64decode(doc["entries"][12]["entry"]))
    raw[20] ^= 1
    doc["entries"][12]["entry"] = base64.b64encode(bytes(raw)).decode()
    out.write_text(json.dumps(doc))
    entries, heads = read_export(out)
    assert verify(entries, heads, pub).first_bad_index == 12


def test_report_names_indices_never_entry_values(trail):
    engine, pub, _ = trail
    rewrite(engine, 3, edited(engine, 3), leaf=False)
    report = check(engine, pub)
    text_ = report.summary() + " ".join(report.problems)
    assert "someone.else" not in text_ and "PSN" not in text_ and "reader" not in text_


def test_row_with_a_negative_index_is_found(trail):
    engine, pub, _ = trail
    data = make_event(999).to_json().encode()
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO audit_entries (idx, entry, leaf_hash, patient, study_uid) VALUES (-3, :e, :h, '', '')"),
            {"e": data, "h": merkle.leaf_hash(data)},
        )
    assert check(engine, pub).first_bad_index == 0


def test_verifying_a_live_log_while_it_grows_is_clean(engine, tmp_path):
    import threading

    log = AuditLog(engine, tmp_path / "keys", flush_interval=0.005, batch_size=16)
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            log.record(make_event(i))
            i += 1
            if i % 8 == 0:
                stop.wait(0.001)

    t = threading.Thread(target=writer)
    t.start()
    try:
        reports = [verify_database(engine, log.public_key)]  # perhaps still empty
        while log.size < 100:
            stop.wait(0.005)
        reports += [verify_database(engine, log.public_key) for _ in range(5)]
    finally:
        stop.set()
        t.join()
        log.close()
    assert all(r.ok for r in reports), [r.problems for r in reports]
    assert reports[-1].size > 0


def test_witness_heads_can_come_from_a_syslog_collectors_file(trail, tmp_path):
    engine, pub, witness = trail
    lines = witness.read_text().splitlines()
    dump = tmp_path / "collector.log"
    dump.write_text("".join(f"<85>1 2026-03-02T10:00:00Z pacs1 safepacs 7 safepacs-audit-head - {x}\n" for x in lines))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_entries WHERE idx >= 24"))
        conn.execute(text("DELETE FROM audit_heads WHERE size > 24"))
    assert check(engine, pub, dump).first_bad_index == 24
