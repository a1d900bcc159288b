"""Audit export to a syslog collector: RFC 5424 messages carrying DICOM audit XML, over TLS
with RFC 5425 octet-counting framing, through a disk spool that survives restarts.

Every message is first appended, already framed, to ``spool`` (so the spool file is itself a
valid RFC 5425 stream); a writer thread sends from the delivered offset (kept in
``spool.offset``) whenever the collector is reachable, and starts over at zero once all is
sent.  A message is lost only if the disk is; delivery is at least once (after a broken
connection the last chunk may be sent again, as RFC 5425 has no acknowledgements).
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from datetime import UTC, datetime
from pathlib import Path

from safepacs.audit.atna import to_xml
from safepacs.audit.events import SECURITY_ALERT, SUCCESS, AuditEvent

FACILITY_AUTHPRIV = 10
SEVERITY_ALERT, SEVERITY_WARNING, SEVERITY_NOTICE = 1, 4, 5
BOM = b"\xef\xbb\xbf"
MSGID_DICOM = "DICOM+RFC3881"
_NIL = "-"


def _token(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, or NILVALUE."""
    clean = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return clean or _NIL


def rfc5424(
    msg: bytes,
    *,
    severity: int,
    msgid: str,
    hostname: str,
    app_name: str = "safepacs",
    procid: str = "",
    timestamp: datetime | None = None,
) -> bytes:
    """One RFC 5424 SYSLOG-MSG; ``msg`` is UTF-8 and gets the BOM that says so."""
    ts = (timestamp or datetime.now(UTC)).isoformat(timespec="microseconds").replace("+00:00", "Z")
    pri = FACILITY_AUTHPRIV * 8 + severity
    header = (f"<{pri}>1 {ts} {_token(hostname, 255)} {_token(app_name, 48)} "
              f"{_token(procid or str(os.getpid()), 128)} {_token(msgid, 32)} {_NIL} ")
    return header.encode("ascii") + BOM + msg


def frame(message: bytes) -> bytes:
    """RFC 5425 octet counting: ``MSG-LEN SP SYSLOG-MSG``."""
    return b"%d %s" % (len(message), message)


def split_frames(data: bytes) -> tuple[list[bytes], int]:
    """Complete frames in ``data`` and the number of bytes they use (a torn tail is left)."""
    frames, pos = [], 0
    while True:
        space = data.find(b" ", pos, pos + 12)
        if space < 0:
            break
        try:
            n = int(data[pos:space])
        except ValueError:
            break
        end = space + 1 + n
        if n <= 0 or end > len(data):
            break
        frames.append(data[space + 1:end])
        pos = end
    return frames, pos


def event_message(event: AuditEvent, *, hostname: str, source_id: str = "SAFEPACS") -> bytes:
    if event.event_id == SECURITY_ALERT:
        severity = SEVERITY_ALERT
    elif event.outcome == SUCCESS:
        severity = SEVERITY_NOTICE
    else:
        severity = SEVERITY_WARNING
    return rfc5424(to_xml(event, source_id=source_id), severity=severity, msgid=MSGID_DICOM, hostname=hostname)


class SyslogSender:
    """An AuditSink that exports to a TLS syslog collector through a disk spool."""

    def __init__(
        self,
        host: str,
        port: int,
        spool: Path,
        *,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        hostname: str | None = None,
        source_id: str = "SAFEPACS",
        retry_interval: float = 1.0,
        background: bool = True,
        timeout: float = 5.0,
    ) -> None:
        self.host, self.port = host, port
        self.spool = Path(spool)
        self._offset_path = self.spool.with_name(self.spool.name + ".offset")
        self._ctx = ssl_context
        self._server_hostname = server_hostname or host
        self.hostname = hostname or socket.gethostname()
        self.source_id = source_id
        self._timeout = timeout
        self._retry = retry_interval
        self._lock = threading.Lock()  # spool file and offset
        self._send_lock = threading.Lock()
        self._sock: ssl.SSLSocket | None = None
        self._wake = threading.Event()
        self._closed = False
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        self._recover()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="audit-syslog", daemon=True)
            self._thread.start()

    # --- spool --------------------------------------------------------------------------

    def _read_offset(self) -> int:
        try:
            return int(self._offset_path.read_text(encoding="ascii").strip() or 0)
        except (OSError, ValueError):
            return 0

    def _write_offset(self, offset: int) -> None:
        tmp = self._offset_path.with_name(self._offset_path.name + ".part")
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(str(offset))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._offset_path)

    def _recover(self) -> None:
        """Drop a frame torn by a crash mid-append; keep everything complete."""
        with self._lock:
            if not self.spool.exists():
                self.spool.touch(mode=0o600)
            data = self.spool.read_bytes()
            _, used = split_frames(data)
            if used != len(data):
                with open(self.spool, "r+b") as fh:
                    fh.truncate(used)
            if self._read_offset() > used:
                self._write_offset(0)

    def pending(self) -> int:
        """Bytes spooled and not yet sent."""
        with self._lock:
            return self.spool.stat().st_size - self._read_offset()

    def _append(self, message: bytes) -> None:
        with self._lock:
            fd = os.open(self.spool, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, frame(message))
            finally:
                os.close(fd)
        self._wake.set()

    # --- sink ---------------------------------------------------------------------------

    def record(self, event: AuditEvent) -> None:
        self._append(event_message(event, hostname=self.hostname, source_id=self.source_id))

    def send_text(self, msgid: str, text: str) -> None:
        self._append(rfc5424(text.encode("utf-8"), severity=SEVERITY_NOTICE, msgid=msgid, hostname=self.hostname))

    # --- delivery -----------------------------------------------------------------------

    def _connected(self) -> ssl.SSLSocket:
        sock = self._sock
        if sock is not None:
            try:  # a collector that went away shows as EOF on a non-blocking read
                sock.setblocking(False)
                alive = sock.recv(1) != b""
            except (ssl.SSLWantReadError, BlockingIOError):
                alive = True
            except OSError:
                alive = False
            finally:
                try:
                    sock.setblocking(True)
                    sock.settimeout(self._timeout)
                except OSError:
                    alive = False
            if alive:
                return sock
            self._disconnect()
        raw = socket.create_connection((self.host, self.port), timeout=self._timeout)
        try:
            sock = self._ctx.wrap_socket(raw, server_hostname=self._server_hostname)
        except (OSError, ssl.SSLError):
            raw.close()
            raise
        self._sock = sock
        return sock

    def _disconnect(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def deliver(self) -> bool:
        """Send what is spooled; True when the spool is empty afterwards."""
        with self._send_lock:
            with self._lock:
                offset = self._read_offset()
                size = self.spool.stat().st_size
            if offset >= size:
                return True
            try:
                sock = self._connected()
                with open(self.spool, "rb") as fh:
                    fh.seek(offset)
                    while offset < size:
                        chunk = fh.read(min(size - offset, 1 << 20))
                        _, used = split_frames(chunk)
                        if used == 0:
                            break
                        sock.sendall(chunk[:used])
                        offset += used
                        with self._lock:
                            self._write_offset(offset)
            except (OSError, ssl.SSLError):
                self._disconnect()
                return False
            with self._lock:  # all sent: start the spool over, unless more arrived meanwhile
                if self.spool.stat().st_size == offset:
                    with open(self.spool, "r+b") as fh:
                        fh.truncate(0)
                        os.fsync(fh.fileno())
                    self._write_offset(0)
                    return True
            return False

    def drain(self, timeout: float) -> bool:
        """Try to deliver everything within ``timeout`` seconds."""
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.deliver():
                return True
            time.sleep(min(0.05, self._retry))
        return self.pending() == 0

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._retry)
            self._wake.clear()
            if not self._closed:
                self.deliver()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.deliver()
        with self._send_lock:
            self._disconnect()
