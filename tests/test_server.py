"""``safepacs serve``'s start-up wiring: an interrupted KEK rotation is settled before the
archive opens, the sealing vault is attached when configured (fail closed when malformed),
and the retention timer follows the settings and the flag."""

from __future__ import annotations

import json

import pytest

from safepacs import server
from safepacs.archive import Archive
from safepacs.errors import SafepacsError
from safepacs.retention import kek
from safepacs.retention.scheduler import Scheduler
from tests.archive.objects import ct_bytes


def test_an_interrupted_kek_rotation_is_completed_before_the_archive_opens(tmp_path, monkeypatch):
    data = tmp_path / "data"
    arch, _ = Archive.create(data)
    arch.ingest(ct_bytes(), source="test")

    def crash(*_args: object) -> None:
        raise OSError("power cut between the commit and the rename")

    monkeypatch.setattr(kek.os, "replace", crash)
    with pytest.raises(OSError):
        kek.rotate(arch)  # the index is re-wrapped under KEK.next; kek.key is the old one
    arch.close()
    monkeypatch.undo()
    assert (data / "keys" / "kek.key.next").exists()
    with pytest.raises(SafepacsError):
        Archive.open(data)  # without settling, the key file no longer fits the index
    arch = server.open_archive(data)
    try:
        assert not (data / "keys" / "kek.key.next").exists()
        assert arch.status()["instances"] == 1
    finally:
        arch.close()


def test_the_vault_is_attached_when_sealing_json_exists_and_a_bad_one_stops_the_start(tmp_path):
    data = tmp_path / "data"
    Archive.create(data)[0].close()
    arch = server.open_archive(data)
    assert getattr(arch, "_vault", None) is None
    arch.close()
    nodes = [f"file://{tmp_path / f'n{i}'}" for i in range(3)]
    (data / "sealing.json").write_text(json.dumps({"k": 2, "nodes": nodes}))
    arch = server.open_archive(data)
    try:
        assert arch._vault.store.k == 2 and arch._vault.store.n == 3
    finally:
        arch.close()
    (data / "sealing.json").write_text('{"k": 2}')
    with pytest.raises(SafepacsError, match="malformed sealing settings"):
        server.open_archive(data)
    (data / "sealing.json").unlink()
    server.open_archive(data).close()  # the failed start left no lock or engine behind


def test_the_retention_timer_follows_the_settings_and_the_flag(tmp_path, capsys):
    data = tmp_path / "data"
    arch, _ = Archive.create(data)
    try:
        assert arch.settings.retention_interval_s == 86400  # daily by default
        assert server.start_retention(arch, enabled=False) is None
        arch.settings.retention_interval_s = 0
        assert server.start_retention(arch) is None
        arch.settings.retention_interval_s = 3600
        job = server.start_retention(arch)
        assert isinstance(job, Scheduler)
        job.stop()
        assert "every 1 h" in capsys.readouterr().out
    finally:
        arch.close()


def test_log_lines_are_written_by_another_thread_and_all_written_at_stop():
    """The request path only queues its access line; stopping writes out every queued
    line and gives the root logger its handlers back."""
    import io
    import logging
    import threading

    from safepacs.server import log_off_the_request_path

    root = logging.getLogger()
    saved = list(root.handlers)
    stream = io.StringIO()
    writers: list[str] = []

    class Recording(logging.StreamHandler):
        def emit(self, record: logging.LogRecord) -> None:
            writers.append(threading.current_thread().name)
            super().emit(record)

    handler = Recording(stream)
    for h in saved:
        root.removeHandler(h)
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        restore = log_off_the_request_path()
        assert root.handlers != [handler]  # queued now
        for i in range(200):
            logging.getLogger("safepacs.test").info("GET /path %d", i)
        restore()
        assert root.handlers == [handler]
        lines = stream.getvalue().splitlines()
        assert lines == [f"GET /path {i}" for i in range(200)]
        assert threading.current_thread().name not in set(writers)
        again = log_off_the_request_path()  # a second serve in the same process queues again
        assert root.handlers != [handler]
        again()
        assert root.handlers == [handler]
    finally:
        root.setLevel(level)
        root.removeHandler(handler)
        for h in saved:
            root.addHandler(h)
