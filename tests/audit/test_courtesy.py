"""Background audit work pauses for request threads, and pausing changes nothing it writes."""

from __future__ import annotations

import time

from sqlalchemy import text

from safepacs.audit.courtesy import Courtesy
from safepacs.audit.log import AuditLog
from tests.audit.conftest import make_event


def _busy(seconds: float, courtesy: Courtesy) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        courtesy.tick()


def test_pauses_once_per_slice_of_work_and_not_before():
    short = Courtesy(slice_s=0.001, pause_s=0.0001)
    _busy(0.02, short)
    assert 2 <= short.pauses <= 20  # one per millisecond of work at most
    long = Courtesy(slice_s=10.0)
    _busy(0.02, long)
    assert long.pauses == 0


def test_start_does_not_count_time_spent_waiting():
    c = Courtesy(slice_s=0.005)
    time.sleep(0.01)  # idle, as the writer between batches
    c.start()
    c.tick()
    assert c.pauses == 0


def test_writer_thread_pauses_in_a_large_batch_and_still_signs_every_entry(engine, tmp_path):
    with AuditLog(engine, tmp_path / "k", flush_interval=60, batch_size=100_000) as log:
        for i in range(400):
            log.record(make_event(i))
        log._wake.set()  # the writer's turn, as at the end of an interval
        deadline = time.monotonic() + 30
        while log.size < 400 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log.size == 400
        assert log.writer_pauses > 0
        with engine.connect() as conn:
            heads = conn.execute(text("SELECT size FROM audit_heads ORDER BY size")).scalars().all()
        assert heads == list(range(1, 401))  # sign_every=1: a head per entry, as before


def test_a_callers_own_flush_does_not_pause(engine, tmp_path):
    with AuditLog(engine, tmp_path / "k", background=False) as log:
        for i in range(400):
            log.record(make_event(i))
        log.flush()
        assert log.size == 400
        assert log.writer_pauses == 0
