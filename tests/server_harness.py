"""Run ``safepacs serve`` as a real subprocess on free loopback ports (used by the end-to-end
tests and the benchmark)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import httpx

from safepacs.archive.service import Archive

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@lru_cache(maxsize=1)
def _serve_help() -> str | None:
    exe = shutil.which("safepacs", path=str(Path(sys.executable).parent)) or "safepacs"
    probe = subprocess.run([exe, "serve", "--help"], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"})
    return probe.stdout if probe.returncode == 0 else None


def serve_command(data_dir: Path, http_port: int, dicom_port: int) -> list[str]:
    """``safepacs serve`` when the CLI has it (ports passed when it takes them, so that its
    defaults cannot override the data dir's settings), else the server module's entry point."""
    text = _serve_help()
    if text is None:
        return [sys.executable, "-m", "safepacs.server", str(data_dir)]
    exe = shutil.which("safepacs", path=str(Path(sys.executable).parent)) or "safepacs"
    cmd = [exe, "serve", "--data-dir", str(data_dir)]
    for flag, value in (("--http-port", http_port), ("--dicom-port", dicom_port)):
        if flag in text:
            cmd += [flag, str(value)]
    return cmd


def configure(data_dir: Path, database_url: str | None, **settings) -> tuple[int, int]:
    """Open the archive, set ports (and any other settings), save, close."""
    archive = Archive.open(data_dir, database_url=database_url)
    try:
        archive.settings.http_port = settings.pop("http_port", None) or free_port()
        archive.settings.dicom_port = settings.pop("dicom_port", None) or free_port()
        for k, v in settings.items():
            setattr(archive.settings, k, v)
        archive.settings.save()
        return archive.settings.http_port, archive.settings.dicom_port
    finally:
        archive.close()


@dataclass
class Server:
    data_dir: Path
    http_port: int
    dicom_port: int
    database_url: str | None = None
    tls_ca: Path | None = None
    proc: subprocess.Popen | None = None
    log: Path = field(init=False)
    starts: int = 0

    def __post_init__(self) -> None:
        self.log = self.data_dir.parent / f"{self.data_dir.name}-server.log"

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_ca else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 90) -> None:
        env = dict(os.environ)
        if self.database_url:
            env["SAFEPACS_DATABASE_URL"] = self.database_url
        self.starts += 1
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(serve_command(self.data_dir, self.http_port, self.dicom_port), stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.data_dir.parent)
        deadline = time.monotonic() + timeout
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(self.tls_ca)) if self.tls_ca else False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", verify=verify, timeout=2).status_code == 200 and self._dicom_up():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("server did not start: " + self.log.read_text()[-3000:])

    def _dicom_up(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.dicom_port)) == 0

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise
        return self.proc.returncode
