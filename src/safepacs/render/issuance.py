"""Issued copies and tracing a leaked one back to its reader.

Before a copy leaves, :meth:`Issuances.issue` writes a row (who, role, when, request,
instance, level) and returns its serial; the watermark carries the serial.  ``trace`` reads
the mark from a PNG, JPEG or DICOM file (or an array), checks it under the site's key and
looks the serial up.  It answers None rather than guess: a mark that does not verify, a
serial with no row, or a DICOM private mark that disagrees with the pixel mark.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, insert, select

from safepacs.audit.events import EXPORT, READ, AuditEvent, AuditSink, LogSink
from safepacs.render.models import Issuance
from safepacs.render.watermark import SERIAL_BITS, Detection, detect


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


class Issuances:
    """The ``render_issuances`` table."""

    def __init__(self, engine: Engine, *, audit: AuditSink | None = None) -> None:
        self._engine = engine
        self._audit = audit or LogSink()

    def issue(self, *, account_id: int, username: str, role: str, instance_uid: str, level: str,
              request_id: str = "", project: str | None = None, purpose: str = "",
              now: datetime | None = None) -> int:
        """Register one copy about to leave; returns its serial (fits the watermark)."""
        when = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
        with self._engine.begin() as conn:
            serial = conn.execute(insert(Issuance).values(
                account_id=account_id, username=username, role=role, issued_at=when,
                request_id=request_id[:64], instance_uid=instance_uid, level=level,
                project=project, purpose=purpose,
            ).returning(Issuance.serial)).scalar_one()
        if serial >= 1 << SERIAL_BITS:
            raise OverflowError("issuance serials exhausted")
        return int(serial)

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


def load_image(path: Path) -> tuple[np.ndarray, int | None, object | None]:
    """(pixels, private-mark serial or None, dataset or None) of a PNG/JPEG/DICOM file."""
    data = Path(path).read_bytes()
    if len(data) > 132 and data[128:132] == b"DICM":
        import pydicom

        from safepacs.render.render import pixel_array

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
        return pixel_array(ds), None, ds
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
    found = detect(pixels, key)
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
