"""Audit trail speed: appends per second, proof sizes and proof time, record() latency.

What it compares, on one core, on a file SQLite database (WAL, synchronous=FULL) in --workdir:

1. events appended per second by ``AuditLog`` with a signed head every N events (N = 1, 16,
   256; plus one head at the end of every batch), against the floor: the same rows inserted
   in the same batches with no hashing and no signing.  Target: >= 5,000 events/s.
2. inclusion and consistency proof sizes for a tree of 10,000,000 entries, computed from the
   tree size alone (a proof's shape depends only on index and size).  Target: < 1 KB.
3. proof generation time on a real log of --large entries (default 200,000; use 1,000,000 for
   the report), cold (fresh reader) and warm.
4. ``record()`` latency p50/p99 on the calling thread (what a request pays when the log
   writes in the background).  The WADO-RS "audit on vs off" comparison is
   :func:`wado_audit_cost`: give it two retrieve callables and it prints the p50 delta.

    .venv/bin/python benchmarks/audit.py [--events 20000] [--large 200000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from safepacs.audit import merkle
from safepacs.audit.events import AuditEvent
from safepacs.audit.log import AuditLog, entry_bytes
from safepacs.audit.proofs import TrailReader
from safepacs.audit.verify import verify_database
from safepacs.index import db

FLOOR_INSERT = text(  # the statement AuditLog uses, without the tree and the heads
    "INSERT INTO audit_entries (idx, entry, leaf_hash, patient, study_uid) "
    "VALUES (:idx, :entry, :leaf_hash, :patient, :study_uid)"
)


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def event(i: int) -> AuditEvent:
    return AuditEvent(
        "110103", "R", user=f"reader{i % 97}", role="radiologist", address=f"10.1.{i % 200}.{i % 250}",
        route="GET /dicomweb/studies/{uid}/series/{uid}", study_uid=f"2.25.{10**30 + i * 7919}",
        patient=f"PSN{i % 5000:06d}", level="identified", purpose="treatment", request_id=f"{i:016x}",
        detail={"basis": "care", "status": 200, "ms": 3.2, "organisation": "General", "department": "Radiology"},
    )


def fresh_engine(workdir: Path, name: str):  # type: ignore[no-untyped-def]
    path = workdir / f"{name}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    return engine


def append_rate(workdir: Path, n: int, sign_every: int, batch: int = 2048) -> float:
    """Events/s from the first record() until close() returns (everything durable)."""
    engine = fresh_engine(workdir, f"rate{sign_every}")
    events = [event(i) for i in range(n)]
    log = AuditLog(engine, workdir / "keys", sign_every=sign_every, batch_size=batch, flush_interval=0.05)
    t = time.perf_counter()
    for e in events:
        log.record(e)  # serialise + hash + queue; the writer thread signs and commits
    log.close()
    dt = time.perf_counter() - t
    engine.dispose()
    return n / dt


def floor_rate(workdir: Path, n: int, batch: int = 2048) -> float:
    """Same rows, same batches, no hashing and no signing."""
    engine = fresh_engine(workdir, "floor")
    events = [event(i) for i in range(n)]
    t = time.perf_counter()
    for start in range(0, n, batch):
        rows = [{"idx": start + k, "entry": entry_bytes(e), "leaf_hash": b"\0" * 32, "patient": e.patient,
                 "study_uid": e.study_uid} for k, e in enumerate(events[start:start + batch])]
        with engine.begin() as conn:
            conn.execute(FLOOR_INSERT, rows)
    dt = time.perf_counter() - t
    engine.dispose()
    return n / dt


def proof_sizes(n: int = 10_000_000) -> dict[str, int]:
    indices = [0, 1, n // 3, n // 2, 8_388_607, 8_388_608, n - 2, n - 1]
    incl = max(merkle.inclusion_proof_size(i, n) for i in indices)
    cons = max(merkle.consistency_proof_size(m, n) for m in (1, 12345, n // 2 + 1, n - 1))
    return {"inclusion_hashes": incl, "inclusion_bytes": incl * 32, "consistency_hashes": cons,
            "consistency_bytes": cons * 32}


def proof_timing(workdir: Path, n: int) -> dict[str, float]:
    engine = fresh_engine(workdir, "large")
    log = AuditLog(engine, workdir / "keys", sign_every=4096, batch_size=8192, background=False)
    t = time.perf_counter()
    for i in range(n):
        log.record(event(i))
    log.flush()
    fill = n / (time.perf_counter() - t)
    head = log.latest_head()
    log.close()
    assert head is not None and head.size == n
    indices = [(i * 7_919_993) % n for i in range(200)]
    reader = TrailReader(engine)  # cold: nothing cached in memory
    cold = []
    for i in indices:
        t = time.perf_counter()
        p = reader.inclusion_proof(i)
        cold.append(time.perf_counter() - t)
        assert p.verifies()
    warm = []
    for i in indices:
        t = time.perf_counter()
        reader.inclusion_proof(i)
        warm.append(time.perf_counter() - t)
    t = time.perf_counter()
    cp = reader.consistency_proof(n // 3, n)
    cons = time.perf_counter() - t
    t = time.perf_counter()
    report = verify_database(engine, log.public_key)
    verify_rate = n / (time.perf_counter() - t)
    assert report.ok
    engine.dispose()
    return {"fill_rate": fill, "cold_p50_ms": statistics.median(cold) * 1e3, "warm_p50_ms": statistics.median(warm) * 1e3,
            "consistency_ms": cons * 1e3, "consistency_hashes": len(cp), "verify_rate": verify_rate}


def verify_rate_every_head(workdir: Path, n: int) -> float:
    """Entries/s `audit verify` checks on a log with one signed head per entry."""
    engine = fresh_engine(workdir, "verify1")
    log = AuditLog(engine, workdir / "keys", sign_every=1, batch_size=2048)
    for i in range(n):
        log.record(event(i))
    log.close()
    t = time.perf_counter()
    report = verify_database(engine, log.public_key)
    rate = n / (time.perf_counter() - t)
    assert report.ok and report.heads_checked == n
    engine.dispose()
    return rate


def record_latency(workdir: Path, n: int) -> dict[str, float]:
    engine = fresh_engine(workdir, "latency")
    log = AuditLog(engine, workdir / "keys", sign_every=1, batch_size=4096, flush_interval=0.02)
    lat = []
    for i in range(n):
        e = event(i)
        t = time.perf_counter()
        log.record(e)
        lat.append(time.perf_counter() - t)
        if i % 50 == 0:
            time.sleep(0.001)  # requests arrive spread out, not as one burst
    log.close()
    engine.dispose()
    lat.sort()
    return {"p50_us": lat[len(lat) // 2] * 1e6, "p99_us": lat[int(len(lat) * 0.99)] * 1e6}


def wado_audit_cost(retrieve_off: Callable[[], object], retrieve_on: Callable[[], object], n: int = 300) -> dict[str, float]:
    """p50 of a retrieve without and with the audit trail (interleaved to share noise)."""
    off, on = [], []
    for _ in range(n):
        for fn, out in ((retrieve_off, off), (retrieve_on, on)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    result = {"off_p50_ms": statistics.median(off) * 1e3, "on_p50_ms": statistics.median(on) * 1e3}
    result["added_p50_ms"] = result["on_p50_ms"] - result["off_p50_ms"]
    print(f"WADO-RS retrieve p50: audit off {result['off_p50_ms']:.3f} ms, on {result['on_p50_ms']:.3f} ms, "
          f"added {result['added_p50_ms']:.3f} ms (target < 1 ms: {'PASS' if result['added_p50_ms'] < 1 else 'MISS'})")
    return result


class _Switch:
    """A sink that forwards to the real trail only while ``on``: the same server and data
    measured with the audit trail and without it."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.on = inner, True

    def record(self, event, **kw) -> None:  # type: ignore[no-untyped-def]
        if self.on:
            self.inner.record(event, **kw)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


def wado_half(work: Path, n: int) -> dict[str, float]:
    """WADO-RS retrieve of one stored CT slice over real HTTP, audit on vs off."""
    import threading

    import httpx
    import uvicorn

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from safepacs.api import create_app
    from safepacs.archive import Archive
    from tests.archive.objects import ct_bytes
    from tests.server_harness import free_port

    archive, _ = Archive.create(work / "wado")
    token = archive.create_token("bench")
    stored = archive.ingest(ct_bytes("1.2.3.99"), source="bench")
    switch = _Switch(archive.audit)
    archive.audit = switch
    archive.access.ctx.audit = switch
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(archive), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = (f"http://127.0.0.1:{port}/dicomweb/studies/{stored.study_uid}/series/{stored.series_uid}"
           f"/instances/{stored.sop_instance_uid}")
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as c:
        def get(on: bool) -> None:
            switch.on = on
            assert c.get(url).status_code == 200
        for _ in range(30):
            get(True)
        result = wado_audit_cost(lambda: get(False), lambda: get(True), n=n)
    server.should_exit = True
    time.sleep(0.3)
    archive.audit = switch.inner
    archive.close()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--large", type=int, default=200_000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--wado", type=int, default=300, help="WADO-RS retrieves per arm (audit on / off)")
    ap.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    ap.add_argument("--repeat", type=int, default=3, help="rate runs per setting; the best is kept (shared machines are noisy)")
    args = ap.parse_args(argv)
    if not args.all_cores:
        pin_one_core()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        print(f"audit benchmark: {args.events} events per run, best of {args.repeat}, SQLite WAL synchronous=FULL, "
              f"{'all cores' if args.all_cores else 'one core'}")
        floor = max(floor_rate(work, args.events) for _ in range(args.repeat))
        print(f"  floor (same inserts, no hash, no signature): {floor:10.0f} events/s")
        for n in (1, 16, 256):
            rate = max(append_rate(work, args.events, n) for _ in range(args.repeat))
            print(f"  AuditLog, head every {n:>3} events:          {rate:10.0f} events/s  "
                  f"({rate / floor:.2f}x floor; target 5,000: {'PASS' if rate >= 5000 else 'MISS'})")
        lat = record_latency(work, min(args.events, 20_000))
        print(f"  record() on the caller's thread: p50 {lat['p50_us']:.1f} us, p99 {lat['p99_us']:.1f} us")
        sizes = proof_sizes()
        print(f"  proof sizes at 10,000,000 entries: inclusion {sizes['inclusion_hashes']} hashes = "
              f"{sizes['inclusion_bytes']} bytes, consistency {sizes['consistency_hashes']} hashes = "
              f"{sizes['consistency_bytes']} bytes (target < 1 KB: "
              f"{'PASS' if max(sizes['inclusion_bytes'], sizes['consistency_bytes']) < 1024 else 'MISS'})")
        t = proof_timing(work, args.large)
        print(f"  real log of {args.large} entries (filled at {t['fill_rate']:.0f} events/s, head every 4096): "
              f"inclusion proof p50 cold {t['cold_p50_ms']:.2f} ms, warm {t['warm_p50_ms']:.3f} ms; "
              f"consistency proof {t['consistency_ms']:.2f} ms ({t['consistency_hashes']} hashes); "
              f"audit verify {t['verify_rate']:.0f} entries/s")
        v = verify_rate_every_head(work, args.events)
        print(f"  audit verify with a signed head per entry: {v:.0f} entries/s (each head's signature checked)")
        wado_half(work, args.wado)
    return 0


if __name__ == "__main__":
    sys.exit(main())
