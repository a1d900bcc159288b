"""A real archive served by uvicorn on a free loopback port, in a thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from safepacs.api import create_app
from safepacs.archive.service import Archive
from safepacs.synth import generate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    url: str
    token: str
    archive: Archive
    data_dir: Path

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"Bearer {token or self.token}"})


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> list[Path]:
    """Synthetic DICOM the door accepts (modalities without burned-in text risk)."""
    root = tmp_path_factory.mktemp("apicorpus")
    generate(root / "in", 24, 5, small=True)
    files = sorted((root / "in").rglob("*.dcm"))
    assert files
    return files


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("archive"))


def serve(data_dir: Path, **app_options) -> Iterator[Served]:
    """A new archive in ``data_dir`` served by uvicorn (``create_app(**app_options)``) until
    the generator is closed."""
    archive, _admins = Archive.create(data_dir)
    token = archive.create_token("reader")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(archive, **app_options), host="127.0.0.1",
                                           port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield Served(url, token, archive, data_dir)
    server.should_exit = True
    thread.join(10)
    archive.close()
