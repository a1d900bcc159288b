"""ordered_map: the same results as map, in order, from forked processes."""

from __future__ import annotations

import os

import pytest

from safepacs.parallel import ordered_map

_BASE = 0  # set before the call: the workers see it as it was then


def _shifted_with_pid(x: int) -> tuple[int, int]:
    return x + _BASE, os.getpid()


def _fails_on_seven(x: int) -> int:
    if x == 7:
        raise ValueError("seven")
    return x


def test_results_come_in_input_order_from_other_processes(monkeypatch):
    monkeypatch.setitem(globals(), "_BASE", 1000)
    out = list(ordered_map(_shifted_with_pid, range(100), workers=3))
    assert [v for v, _ in out] == [x + 1000 for x in range(100)]
    pids = {pid for _, pid in out}
    assert os.getpid() not in pids and 1 < len(pids) <= 3


def test_one_worker_or_one_item_runs_here():
    assert {pid for _, pid in ordered_map(_shifted_with_pid, range(5), workers=1)} == {os.getpid()}
    assert {pid for _, pid in ordered_map(_shifted_with_pid, [1], workers=8)} == {os.getpid()}
    assert list(ordered_map(_shifted_with_pid, [], workers=4)) == []


def test_a_workers_error_reaches_the_caller():
    with pytest.raises(ValueError, match="seven"):
        list(ordered_map(_fails_on_seven, range(20), workers=2))
