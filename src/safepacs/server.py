"""One process serving the archive: DICOMweb over uvicorn (HTTP or HTTPS) and the DIMSE SCP,
with the retention job on a timer (``retention_interval_s`` in the settings, daily by
default; 0 or ``--no-retention`` turns it off) and, when ``DATA_DIR/sealing.json`` exists,
the vault of sealed studies.

SIGTERM and SIGINT stop all of it cleanly (uvicorn drains requests, the SCP shuts down, a
retention run in progress finishes, the archive is closed).  Logs carry methods, paths (de-identified UIDs only, never query strings, which
may hold names) and statuses.
"""

from __future__ import annotations

import gc
import logging
import logging.handlers
import queue
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from safepacs.api import create_app
from safepacs.api.app import loggable_path
from safepacs.config import check_origins
from safepacs.dicom.quiet import quiet_pynetdicom
from safepacs.dimse import start as start_dimse
from safepacs.memtune import keep_freed_memory

log = logging.getLogger("safepacs.server")
TOKEN_FILE = "bootstrap-token"
SEND_BUFFER = 4 * 1024 * 1024


class AccessLog:
    """ASGI middleware: one line per request, without the query string."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 0}

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            log.info("%s %s %s %.1fms", scope["method"], loggable_path(scope["path"]), status["code"],
                     (time.perf_counter() - started) * 1000)


def server_ssl_context(cert: str | Path, key: str | Path, ca: str | Path | None) -> ssl.SSLContext:
    """TLS for the DICOM port; with ``ca``, client certificates are verified when offered."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    if ca:
        ctx.load_verify_locations(str(ca))
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def http_socket(host: str, port: int) -> socket.socket:
    """The listening socket, made here so that accepted connections inherit a send buffer large
    enough for a whole typical object: the response is handed to the kernel in one write
    instead of the event loop waking for every 64 KiB the client reads."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    except OSError:
        pass  # the kernel's limit applies
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def urls(host: str, http_port: int, dicom_port: int, ae_title: str, tls: bool) -> list[str]:
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if tls else "http"
    return [
        f"DICOMweb: {scheme}://{shown}:{http_port}/dicomweb",
        f"DICOM:    {ae_title}@{shown}:{dicom_port}" + (" (TLS)" if tls else ""),
    ]


def run(archive: Any, *, host: str | None = None, http_port: int | None = None,
        dicom_port: int | None = None, ae_title: str | None = None, tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None, tls_ca: str | Path | None = None,
        allowed_callers: list[dict] | None = None, move_destinations: dict | None = None,
        log_level: str = "info", retention: bool = True, cors_origins: list[str] | None = None,
        **_: Any) -> None:
    """Serve until SIGTERM/SIGINT, then stop both fronts and the retention timer and close
    ``archive``.

    Unset arguments come from ``archive.settings``; ``cors_origins`` adds to its list.
    ``dicom_port=0`` disables DIMSE; ``retention=False`` (or ``retention_interval_s`` 0) leaves
    expiry to ``safepacs retention run``.
    """
    keep_freed_memory()  # a no-op when ``safepacs serve`` did it already
    s = archive.settings
    host = host or s.http_host
    http_port = s.http_port if http_port is None else http_port
    dicom_port = s.dicom_port if dicom_port is None else dicom_port
    ae_title = ae_title or s.ae_title
    tls_cert = tls_cert or s.tls_cert
    tls_key = tls_key or s.tls_key
    tls_ca = tls_ca or s.tls_ca
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("TLS needs both a certificate and a key")
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    quiet_pynetdicom()  # its warnings quote UIDs of the objects received

    cors = check_origins([*s.cors_origins, *(cors_origins or [])])  # checked, without repeats
    app = AccessLog(create_app(archive, cors_origins=cors))
    config = uvicorn.Config(
        app, host=host, port=http_port, access_log=False, log_level="warning",
        ssl_certfile=str(tls_cert) if tls_cert else None, ssl_keyfile=str(tls_key) if tls_key else None,
        ssl_ca_certs=str(tls_ca) if tls_ca and tls_cert else None,
        ssl_cert_reqs=ssl.CERT_OPTIONAL if tls_ca and tls_cert else ssl.CERT_NONE,
        timeout_keep_alive=30, server_header=False,
        proxy_headers=False,  # no proxy is trusted: X-Forwarded-* never changes the client address
    )
    server = uvicorn.Server(config)

    def stop(signum: int, _frame: Any) -> None:
        server.should_exit = True

    # uvicorn re-raises the signal it caught after shutting down; these handlers make that a
    # no-op so the clean-up below always runs.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    scp = job = None
    restore_logging = log_off_the_request_path()
    try:
        job = start_retention(archive, enabled=retention)
        if dicom_port:
            ctx = server_ssl_context(tls_cert, tls_key, tls_ca) if tls_cert and tls_key else None
            scp = start_dimse(
                archive, host=host, port=dicom_port, ae_title=ae_title,
                allowed_callers=s.allowed_callers if allowed_callers is None else allowed_callers,
                move_destinations=s.move_destinations if move_destinations is None else move_destinations,
                ssl_context=ctx)
        sock = http_socket(host, http_port)
        for line in urls(host, http_port, dicom_port, ae_title, bool(tls_cert)):
            print(line, flush=True)
        # What start-up loaded (about 200 000 objects: the app, pydicom's dictionaries, the
        # tables) lives as long as the server: kept out of the collector, a full collection
        # no longer walks it (one took 155 ms, a pause every request then in flight waits out).
        gc.collect()
        gc.freeze()
        server.run(sockets=[sock])
    finally:
        if scp is not None:
            scp.shutdown()
        if job is not None:
            job.stop()
        archive.close()
        restore_logging()  # writes out what is still queued
        print("safepacs stopped", flush=True)


def log_off_the_request_path() -> Callable[[], None]:
    """Hand log records to a thread that writes them: a request only queues its access
    line (writing it to the log stream cost about a tenth of a slice retrieve's server
    time).  Returns what undoes it, after writing out what is still queued; a no-op when
    the root logger has no handler or queues already."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    if not handlers or any(isinstance(h, logging.handlers.QueueHandler) for h in handlers):
        return lambda: None
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
    queued = logging.handlers.QueueHandler(records)
    for handler in handlers:
        root.removeHandler(handler)
    root.addHandler(queued)
    listener.start()

    def restore() -> None:
        root.removeHandler(queued)
        listener.stop()
        for handler in handlers:
            root.addHandler(handler)

    return restore


def start_retention(archive: Any, *, enabled: bool = True) -> Any:
    """The retention timer (``safepacs.retention.scheduler``), or None when turned off."""
    interval = float(getattr(archive.settings, "retention_interval_s", 0) or 0)
    if not enabled or interval <= 0:
        print("Retention: not on a timer (run 'safepacs retention run' yourself).", flush=True)
        return None
    from safepacs.retention import scheduler

    job = scheduler.start(archive, interval, audit=archive.audit)
    print(f"Retention: expired studies are destroyed every {interval / 3600:g} h "
          "('safepacs retention plan' shows what is due).", flush=True)
    return job


def open_archive(data_dir: Path, *, database_url: str | None = None) -> Any:
    """Open an existing data dir: settle a KEK rotation a crash interrupted (before anything
    unwraps a key), open the archive, attach the vault of sealed studies when configured."""
    from safepacs.archive.service import Archive
    from safepacs.config import Settings
    from safepacs.index import db
    from safepacs.retention.kek import finish_rotation

    settings = Settings.load(Path(data_dir), database_url=database_url)
    engine = db.make_engine(settings.database_url)
    try:
        outcome = finish_rotation(settings.data_dir, settings.kek, engine)
    finally:
        engine.dispose()
    if outcome != "none":
        log.warning("an interrupted key-encryption-key rotation was settled at start (%s)", outcome)
    archive = Archive.open(data_dir, database_url=database_url)
    try:
        attach_vault(archive, Path(data_dir))
    except BaseException:
        archive.close()
        raise
    return archive


def attach_vault(archive: Any, data_dir: Path) -> Any:
    """The vault of ``DATA_DIR/sealing.json``, attached to ``archive`` (None without one)."""
    from safepacs.store.sealing import attach_from_data_dir

    vault = attach_from_data_dir(archive, data_dir, audit=archive.audit)
    if vault is not None:
        print(f"Sealed studies: split storage over {vault.store.n} nodes, "  # type: ignore[attr-defined]
              f"any {vault.store.k} rebuild a blob.", flush=True)  # type: ignore[attr-defined]
    return vault


def save_token(data_dir: Path, token: str) -> Path:
    """The bootstrap token, mode 0600, beside the archive (printed once as well)."""
    import os

    path = Path(data_dir) / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def load_demo(archive: Any, count: int = 20, seed: int = 1) -> int:
    """Ingest a small synthetic demo set (``safepacs.archive.demo`` when present)."""
    try:
        from safepacs.archive import demo  # type: ignore[attr-defined]

        return int(demo.load(archive))
    except (ImportError, AttributeError):
        pass
    import tempfile

    from safepacs.synth import generate

    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp) / "demo", count, seed, small=True)
        for f in sorted((Path(tmp) / "demo").rglob("*.dcm")):
            try:
                archive.ingest(f.read_bytes(), source="demo")
                n += 1
            except Exception as exc:  # noqa: BLE001 - the demo goes on without that file
                log.warning("demo file skipped: %s", type(exc).__name__)
    return n


def open_or_create(data_dir: Path, *, database_url: str | None = None, demo: bool = True) -> Any:
    """Open ``data_dir``; on first use create it, save the bootstrap token and load the demo."""
    from safepacs.archive.service import Archive
    from safepacs.config import SETTINGS_FILE

    data_dir = Path(data_dir)
    if (data_dir / SETTINGS_FILE).exists():
        archive = open_archive(data_dir, database_url=database_url)
        _sign_in_hint(archive, data_dir / TOKEN_FILE)
        return archive
    data_dir.mkdir(parents=True, exist_ok=True)
    archive, admins = Archive.create(data_dir, database_url=database_url)
    print(f"New archive in {data_dir}.", flush=True)
    print_admins(admins)
    token = archive.create_token("demo-viewer")
    path = save_token(data_dir, token)
    print("A service account 'demo-viewer' (the de-identified view of every study) has this bearer "
          f"token (shown once; also saved to {path}, mode 0600):", flush=True)
    print(f"  {token}", flush=True)
    if demo:
        n = load_demo(archive)
        print(f"Loaded {n} synthetic demo instances.", flush=True)
    _sign_in_hint(archive, path)
    return archive


def print_admins(admins: dict[str, tuple[str, str]]) -> None:
    """The three administrator accounts and their one-time passwords (printed once only)."""
    print("Administrator accounts (one-time passwords, shown once; change them at first sign-in "
          "with POST /api/auth/login, then enrol TOTP):", flush=True)
    for role, (username, password) in admins.items():
        print(f"  {role:<17} {username:<16} {password}", flush=True)


def _sign_in_hint(archive: Any, token_file: Path) -> None:
    print("Sign in with 'Authorization: Bearer <token>' (never a token in the URL), e.g.\n"
          f"  curl -H \"Authorization: Bearer $(cat {token_file})\" <DICOMweb URL below>/studies",
          flush=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m safepacs.server [DATA_DIR]``: ``safepacs serve`` with every option from the
    data dir's settings (what the test harness falls back to without the CLI)."""
    args = sys.argv[1:] if argv is None else argv
    data_dir = Path(args[0]) if args else Path("safepacs-data")
    run(open_or_create(data_dir))


if __name__ == "__main__":
    main()
