"""The batch runner: how discovery sizes files and how the work is shared among workers."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
from hypothesis import given
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from safepacs.deid import batch
from safepacs.deid.batch import _FILE_COST, Result, Task, shares
from safepacs.deid.keys import Keys
from safepacs.deid.options import Options

MB = 1 << 20


def _tasks(sizes: list[int]) -> list[Task]:
    return [Task(Path(f"{i}.dcm"), f"{i}.dcm", size=s) for i, s in enumerate(sizes)]


def test_discovery_records_each_file_size(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.dcm").write_bytes(b"x" * 1234)
    (tmp_path / "two.dcm").write_bytes(b"")
    sizes = {t.rel: t.size for t in batch.discover(tmp_path)}
    assert sizes == {"a/one.dcm": 1234, "two.dcm": 0}


@given(
    st.lists(st.integers(0, 64 * MB), max_size=300),
    st.integers(2, 8),
)
def test_shares_keep_every_task_once_in_order(sizes, workers):
    tasks = _tasks(sizes)
    pieces = list(shares(tasks, workers))
    assert [t for piece in pieces for t in piece] == tasks
    assert all(1 <= len(piece) <= 16 for piece in pieces)


def test_the_last_pieces_are_single_files_so_workers_finish_together():
    # a run of radiographs at the end, the case that left one worker copying alone
    tasks = _tasks([MB // 2] * 400 + [8 * MB] * 100)
    pieces = list(shares(tasks, 2))
    assert len(pieces[0]) == 16  # early pieces are full: few round trips
    tail = pieces[-8:]
    assert all(len(piece) == 1 for piece in tail)
    # each piece is at most about an eighth per worker of what was left when it was cut
    left = sum(t.size + _FILE_COST for t in tasks)
    for piece in pieces:
        weight = sum(t.size + _FILE_COST for t in piece)
        assert len(piece) == 1 or (weight - piece[-1].size - _FILE_COST) * 16 < left
        left -= weight


def test_small_runs_are_shared_one_file_at_a_time():
    assert [len(p) for p in shares(_tasks([MB] * 10), 2)] == [1] * 10


def test_two_workers_report_in_input_order_what_one_worker_reports(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(40):  # 40 files: more pieces than workers
        if i % 7:
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.{i}"
            ds.save_as(inp / f"{i:02d}.dcm")
        else:
            (inp / f"{i:02d}.dcm").write_bytes(b"not dicom")
    options = Options(clean_pixels="never", accept_burned_in_risk=True)
    secret = Keys(b"k" * 32).secret

    def statuses(workers: int) -> list[tuple[str, str]]:
        out = tmp_path / f"out{workers}"
        job = batch.Job(out, None, options, secret, None, time.time() - 1)
        seen: list[str] = []
        results = batch.run(
            list(batch.discover(inp)), job, workers=workers, on_result=lambda r: seen.append(r.input)
        )
        assert seen == [r.input for r in results]  # reported as they are returned
        return [(r.input, r.status) for r in results]

    one = statuses(1)
    assert [name for name, _ in one] == [f"{i:02d}.dcm" for i in range(40)]
    assert {status for _, status in one} == {"ok", "rejected"}
    assert statuses(2) == one


def test_a_report_line_holds_its_fields_in_order_and_pixels_only_when_cleaned():
    plain = Result("a/1.dcm", "SP1/x.dcm", "ok").to_dict()
    assert list(plain) == ["input", "output", "status", "reason"]
    assert plain == {"input": "a/1.dcm", "output": "SP1/x.dcm", "status": "ok", "reason": None}
    cleaned = Result("a/2.dcm", None, "rejected", "why", pixels={"boxes_found": 1}).to_dict()
    assert list(cleaned) == ["input", "output", "status", "reason", "pixels"]
    assert cleaned["pixels"] == {"boxes_found": 1}
