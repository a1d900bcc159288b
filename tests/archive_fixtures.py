"""Fixtures for tests of the archive and of what is built on it (a pytest plugin, loaded by
``tests/conftest.py``).  Real components only: a real PostgreSQL 15 cluster, a real S3 server.

``database_url`` (function scope, parametrised ``sqlite`` / ``postgresql``)
    ``None`` for SQLite (the archive's default file inside its data dir), or the URL of a
    fresh, empty PostgreSQL database for this test.  The PostgreSQL cluster is started once
    per session and xdist worker (``initdb`` + ``pg_ctl`` as the ``postgres`` user via
    ``runuser``, on a free loopback port, fsync off) and stopped at the end.  Without
    ``/usr/lib/postgresql/15/bin/initdb`` (or not root) the postgresql cases are skipped,
    and FAIL when the environment variable ``CI`` is set.
``archive_dir`` (function scope)
    An empty folder for an archive's data dir.
``archive`` (function scope)
    ``(Archive, bootstrap_token)`` created in ``archive_dir`` on ``database_url``; closed after
    the test.
``s3_url`` (function scope)
    A store URL ``s3://S3RVER:S3RVER@<fresh bucket>?endpoint=http://127.0.0.1:PORT`` on an
    ``s3rver@3.7.1`` server (npm), started once per session and worker.  The package is
    installed into ``.cache/node`` on first use (``make s3rver`` does the same).  Skipped
    when it cannot be installed, FAILS under ``CI``.
``dump_database(url_or_none, archive_dir, binary=None) -> bytes``
    Every value of every table (text as UTF-8, binary raw), for leak searches.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, select, text

from safepacs.archive.service import Archive
from safepacs.index.db import normalise_url

ROOT = Path(__file__).resolve().parents[1]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
NODE_DIR = ROOT / ".cache" / "node"
S3RVER = NODE_DIR / "node_modules" / ".bin" / "s3rver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


def _wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


# --- PostgreSQL -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Base URL (``postgresql://postgres@127.0.0.1:PORT``) of a throwaway cluster."""
    if not (PG_BIN / "initdb").exists():
        _unavailable(f"PostgreSQL 15 is not installed ({PG_BIN / 'initdb'} missing)")
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        _unavailable("the PostgreSQL test cluster is started as root via runuser")
    base = Path(tempfile.mkdtemp(prefix="safepacs-pg-"))  # pytest's tmp is 0700 root-only
    shutil.chown(base, "postgres", "postgres")
    data, log = base / "data", base / "pg.log"
    port = free_port()

    def as_postgres(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=120)

    init = as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
    if init.returncode != 0:
        pytest.fail("initdb failed: " + init.stderr[-2000:])
    start = as_postgres(
        str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off", "start",
    )
    if start.returncode != 0:
        pytest.fail("pg_ctl start failed: " + start.stderr[-2000:])
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    base = request.getfixturevalue("postgres_server")
    name = "t_" + uuid.uuid4().hex[:16]
    admin = create_engine(normalise_url(base + "/postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def archive_dir(tmp_path) -> Path:
    return tmp_path / "archive"


@pytest.fixture
def archive(archive_dir, database_url) -> Iterator[tuple[Archive, str]]:
    arch, _admins = Archive.create(archive_dir, database_url=database_url)
    token = arch.create_token("reader")  # a service account: the de-identified view
    try:
        yield arch, token
    finally:
        arch.close()


def dump_database(url: str | None, archive_dir: Path, *, binary: bool | None = None) -> bytes:
    """Every value of every table, one per line, text as UTF-8 and binary values raw (for
    leak searches).  ``binary=False``: string values only (no numbers, dates, binary);
    ``True``: binary values only."""
    url = url or f"sqlite:///{archive_dir / 'index.sqlite'}"
    engine = create_engine(normalise_url(url))
    meta = MetaData()
    meta.reflect(engine)
    out = bytearray()
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    is_binary = isinstance(value, bytes | bytearray | memoryview)
                    if binary is True and not is_binary or binary is False and not isinstance(value, str):
                        continue
                    out += (bytes(value) if is_binary else str(value).encode("utf-8")) + b"\n"
    engine.dispose()
    return bytes(out)


# --- S3 (s3rver) ----------------------------------------------------------------------
def install_s3rver() -> bool:
    """``npm install s3rver@3.7.1`` into .cache/node (idempotent)."""
    if S3RVER.exists():
        return True
    if shutil.which("npm") is None:
        return False
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR), "s3rver@3.7.1"],
        capture_output=True, text=True, timeout=600,
    )
    return proc.returncode == 0 and S3RVER.exists()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a running s3rver."""
    if not install_s3rver():
        _unavailable("s3rver (npm package) cannot be installed")
    port = free_port()
    folder = tmp_path_factory.mktemp("s3")
    proc = subprocess.Popen(
        [str(S3RVER), "-d", str(folder), "-a", "127.0.0.1", "-p", str(port), "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        if not _wait_port(port, 30, proc):
            pytest.fail("s3rver did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def s3_url(s3_server) -> str:
    bucket = "t-" + uuid.uuid4().hex[:12]
    return f"s3://S3RVER:S3RVER@{bucket}?endpoint={s3_server}"
