"""The batch runner: how discovery sizes files and how the work is shared among workers."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
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


def _two_sizes(inp: Path) -> None:
    """A small CT and a large one (the same object with 400 KB more pixel data)."""
    inp.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.save_as(inp / "small.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.99"
    ds.Rows = ds.Columns = 448
    ds.PixelData = bytes(448 * 448 * 2)
    ds.save_as(inp / "large.dcm")


def _limited(limit: int):  # type: ignore[no-untyped-def]
    def start() -> None:  # in the child: files may not grow past ``limit`` bytes
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return start


@pytest.mark.parametrize("path", ["header fast path", "engine path"])
def test_a_file_the_disk_cannot_take_is_rejected_with_the_reason_and_nothing_half_written(tmp_path, path):
    inp, out, deltas = tmp_path / "in", tmp_path / "out", tmp_path / "deltas"
    _two_sizes(inp)
    engine = ["--delta-dir", deltas] if path == "engine path" else []  # deltas: engine's path
    proc = subprocess.run(
        [sys.executable, "-m", "safepacs", "deid", inp, out, "--key-file", tmp_path / "k",
         "--no-clean-pixels", "--accept-burned-in-risk", *engine],
        capture_output=True, text=True, timeout=300, preexec_fn=_limited(200_000),
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = {r["input"]: r for r in map(json.loads, batch.default_report(out).read_text().splitlines())}
    assert lines["small.dcm"]["status"] == "ok"
    assert lines["large.dcm"] == {"input": "large.dcm", "output": None, "status": "rejected",
                                  "reason": "I/O error (File too large)"}
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written == [out / lines["small.dcm"]["output"]]  # no output, no temp file, for large
    if engine:
        assert [p.name for p in deltas.iterdir()] == [Path(lines["small.dcm"]["output"]).stem + ".delta"]


def test_an_output_whose_delta_cannot_be_written_is_taken_back(tmp_path):
    inp = tmp_path / "in"
    _two_sizes(inp)
    options = Options(clean_pixels="never", accept_burned_in_risk=True)
    secret = Keys(b"k" * 32).secret

    def run(name: str) -> tuple[Path, Path, list[Result]]:
        out, deltas = tmp_path / f"out-{name}", tmp_path / f"deltas-{name}"
        deltas.mkdir(exist_ok=True)
        job = batch.Job(out, None, options, secret, deltas, time.time() - 1)
        return out, deltas, batch.run(list(batch.discover(inp)), job)

    _, deltas, first = run("first")
    assert [r.status for r in first] == ["ok", "ok"]
    large = [r for r in first if r.input == "large.dcm"][0]
    blocked = tmp_path / "deltas-second" / (Path(large.output).stem + ".delta")
    blocked.mkdir(parents=True)  # the delta's name is taken by a folder of an older run
    os.utime(blocked, (0, 0))
    out, _, second = run("second")
    assert [(r.input, r.status) for r in second] == [("large.dcm", "rejected"), ("small.dcm", "ok")]
    assert second[0].reason.startswith("I/O error (") and second[0].output is None
    assert not (out / large.output).exists() and (out / second[1].output).is_file()
