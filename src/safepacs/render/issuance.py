"""Issued copies and tracing a leaked one back to its reader.

Before a copy leaves, :meth:`Issuances.issue` writes a row (who, role, when, request,
instance, level) and returns its serial; the watermark carries the serial.  Serials are
drawn at random (31 bits, so they fit every database's INTEGER), which lets a copy be
marked and encoded *while* its row is being committed: :meth:`Issuances.issued` hands the
serial out at once and returns only once the row is committed, so no copy leaves
untraceable.  Rows of concurrent requests share one commit.  A drawn serial already taken
fails that row's commit, and the copy is made again under a fresh one.

How durable: committed rows survive a crash of the server before the copy leaves.  They
are committed without waiting for the disk (SQLite ``synchronous=NORMAL`` on the
committer's own connection, PostgreSQL ``synchronous_commit=off`` for its transactions),
which took 3-15 ms a copy; the next synced commit, the audit trail's every 50 ms, makes
them safe from power loss too, the same bound as the audit events of the same reads.  ``trace`` reads
the mark from a PNG, JPEG or DICOM file (or an array), checks it under the site's key and
looks the serial up.  It answers None rather than guess: a mark that does not verify, a
serial with no row, or a DICOM private mark that disagrees with the pixel mark.
"""

from __future__ import annotations

import io
import secrets
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from safepacs.audit.events import EXPORT, READ, AuditEvent, AuditSink, LogSink
from safepacs.errors import SafepacsError
from safepacs.render.models import Issuance
from safepacs.render.watermark import Detection, detect

#: serials are drawn from 1 .. 2**31 - 1 (the watermark carries 32 bits; INTEGER is signed)
SERIAL_LIMIT = (1 << 31) - 1
T = TypeVar("T")
_ATTEMPTS = 8  # a collision is ~1 in 2**31/rows; eight in a row means something else is wrong


@dataclass(frozen=True)
class IssuedCopy:
    serial: int
    account_id: int
    username: str
    role: str
    issued_at: datetime
    request_id: str
    instance_uid: str
    level: str
    project: str | None
    purpose: str


@dataclass(frozen=True)
class TraceResult:
    copy: IssuedCopy
    found_by: str  #: "pixels", "private" or "pixels+private"
    detection: Detection | None


#: compiled once: the statement runs for every copy that leaves
_INSERT = insert(Issuance)


class SerialTaken(Exception):
    """The drawn serial is already registered (draw again)."""


class Issuances:
    """The ``render_issuances`` table, written by one committer thread in groups."""

    def __init__(self, engine: Engine, *, audit: AuditSink | None = None) -> None:
        self._engine = engine
        self._audit = audit or LogSink()
        self._pending: list[tuple[dict, Future]] = []
        self._wake = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closed = False

    def issue(self, *, account_id: int, username: str, role: str, instance_uid: str, level: str,
              request_id: str = "", project: str | None = None, purpose: str = "",
              now: datetime | None = None) -> int:
        """Register one copy about to leave; returns its serial once the row is durable."""
        return self.issued(lambda serial: serial, account_id=account_id, username=username, role=role,
                           instance_uid=instance_uid, level=level, request_id=request_id, project=project,
                           purpose=purpose, now=now)[1]

    def issued(self, make: Callable[[int], T], *, account_id: int, username: str, role: str,
                  instance_uid: str, level: str, request_id: str = "", project: str | None = None,
                  purpose: str = "", now: datetime | None = None) -> tuple[T, int]:
        """``(make(serial), serial)``: the copy is made while its row is committed, and
        returned only after the commit (made again under a new serial if it collided)."""
        when = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
        row = dict(account_id=account_id, username=username, role=role, issued_at=when,
                   request_id=request_id[:64], instance_uid=instance_uid, level=level,
                   project=project, purpose=purpose)
        for _ in range(_ATTEMPTS):
            serial = 1 + secrets.randbelow(SERIAL_LIMIT)
            committed = self._submit({**row, "serial": serial})
            try:
                made = make(serial)
            finally:
                try:
                    committed.result()
                except SerialTaken:
                    continue
            return made, serial
        raise RuntimeError("no free issuance serial could be registered")

    def close(self) -> None:
        """Commit what is queued and stop the committer."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._writer is not None:
            self._writer.join()

    def _submit(self, row: dict) -> Future:
        done: Future = Future()
        with self._wake:
            if self._closed:
                raise RuntimeError("the issuance register is closed")
            self._pending.append((row, done))
            if self._writer is None:
                self._writer = threading.Thread(target=self._run, name="safepacs-issuances", daemon=True)
                self._writer.start()
            self._wake.notify()
        return done

    def _run(self) -> None:
        conn: Connection | None = None
        try:
            while True:
                with self._wake:
                    while not self._pending and not self._closed:
                        self._wake.wait()
                    if not self._pending:
                        return
                    batch, self._pending = self._pending, []
                if conn is None or conn.closed or conn.invalidated:
                    conn = self._connect()
                self._commit(conn, batch)
        finally:
            if conn is not None and not conn.closed:
                self._release(conn)

    def _connect(self) -> Connection:
        conn = self._engine.connect()
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA synchronous=NORMAL")  # this connection only
            conn.commit()
        return conn

    def _release(self, conn: Connection) -> None:
        try:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA synchronous=FULL")  # as the pool hands it out
                conn.commit()
        finally:
            conn.close()

    def _commit(self, conn: Connection, batch: list[tuple[dict, Future]]) -> None:
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                conn.execute(_INSERT, [row for row, _ in batch])
        except IntegrityError:
            if len(batch) > 1:  # find the row whose serial is taken; the others still go in
                for one in batch:
                    self._commit(conn, [one])
                return
            batch[0][1].set_exception(SerialTaken())
            return
        except BaseException as exc:  # noqa: BLE001 - the requests waiting on it report it
            for _, done in batch:
                done.set_exception(exc)
            return
        for _, done in batch:
            done.set_result(None)

    def lookup(self, serial: int) -> IssuedCopy | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(Issuance).where(Issuance.serial == serial)).mappings().first()
        if row is None:
            return None
        values = {k: row[k] for k in IssuedCopy.__dataclass_fields__}
        return IssuedCopy(**values)

    def record_trace(self, result: TraceResult | None, *, user: str, role: str = "") -> None:
        """Audit that a trace was run (and what it named, by account and instance only)."""
        detail: dict[str, str | int | bool] = {"found": result is not None}
        if result is not None:
            detail.update(serial=result.copy.serial, issued_to=result.copy.username,
                          found_by=result.found_by)
        self._audit.record(AuditEvent(event_id=EXPORT, action=READ, user=user, role=role,
                                      route="cli:trace", level=result.copy.level if result else "",
                                      study_uid="", reason="watermark trace", detail=detail))


def load_image(path: Path) -> tuple[np.ndarray | None, int | None, object | None]:
    """(pixels, private-mark serial or None, dataset or None) of a PNG/JPEG/DICOM file;
    pixels are None for DICOM whose pixels cannot be read as an image (a one-bit mask)."""
    data = Path(path).read_bytes()
    if len(data) > 132 and data[128:132] == b"DICM":
        import pydicom

        from safepacs.render.render import pixel_array

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
        try:
            return pixel_array(ds), None, ds
        except SafepacsError:
            return None, None, ds  # the private mark may still name the copy
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if img.mode not in ("L", "RGB", "I;16", "I"):
            img = img.convert("RGB")
        return np.asarray(img), None, None


def trace(image: Path | np.ndarray, key: bytes,
          lookup: Callable[[int], IssuedCopy | None]) -> TraceResult | None:
    """Whom the copy was issued to, or None when no verified mark names a registered copy."""
    ds = None
    if isinstance(image, np.ndarray):
        pixels = image
    else:
        pixels, _, ds = load_image(Path(image))
    private = None
    if ds is not None:
        from safepacs.render.render import read_private_mark

        private = read_private_mark(ds, key)  # type: ignore[arg-type]
    found = detect(pixels, key) if pixels is not None else None
    if found is not None and private is not None and found.serial != private:
        return None  # two marks that disagree: name nobody
    serial = found.serial if found is not None else private
    if serial is None:
        return None
    copy = lookup(serial)
    if copy is None:
        return None
    how = "+".join(n for n, v in (("pixels", found), ("private", private)) if v is not None)
    return TraceResult(copy, how, found)
