"""Clean Pixel Data for one dataset: detect, redact every frame, write back, keep originals.

``clean_pixels`` is pure (no files): it takes a dataset whose pixel data is loaded and the
original header (before header de-identification, whose values the detector looks for),
changes the pixel data in place and returns what restore needs plus a report that names
rules, never text.  Header attributes it changes are recorded in the identity delta given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from safepacs.deid.delta import META, IdentityDelta, PixelDelta
from safepacs.deid.pixels.encode import TOUCHED_TAGS, write_back, write_back_frames
from safepacs.deid.pixels.frames import (
    PixelError,
    Stored,
    darkest_value,
    decoded_frame,
    decoded_frames,
    display_frame,
    layout,
    stored_frames,
)
from safepacs.deid.pixels.redact import Patch, Rect, merge, padded, redact, unredact
from safepacs.dicom.image import pixel_keyword

_TRANSFER_SYNTAX = 0x00020010
_PIXEL_GROUP = 0x7FE0


@dataclass
class PixelCleanResult:
    """What cleaning found and did in one file; ``pixels`` goes into the identity delta."""

    boxes_found: int = 0
    boxes_removed: int = 0
    rules: list[str] = field(default_factory=list)  # rule of each removed box, sorted
    kept_rules: list[str] = field(default_factory=list)  # rule of each kept box (clinical marks)
    frames_examined: int = 0
    ocr_seconds: float = 0.0
    detect_seconds: float = 0.0
    seconds: float = 0.0
    pixels: PixelDelta | None = None  # None: nothing was removed, pixel data unchanged
    rects: list[Rect] = field(default_factory=list)  # filled areas (with margins), all frames

    @property
    def changed(self) -> bool:
        return self.pixels is not None

    def report(self) -> dict:
        """The per-file report entry: counts, rule names and times; never text."""
        return {
            "boxes_found": self.boxes_found,
            "boxes_removed": self.boxes_removed,
            "rules": self.rules,
            "kept_rules": self.kept_rules,
            "frames_examined": self.frames_examined,
            "ocr_seconds": round(self.ocr_seconds, 4),
            "detect_seconds": round(self.detect_seconds, 4),
            "seconds": round(self.seconds, 4),
        }


#: find_identity(frame, header, *, remove_all_text) -> FrameReport (see .findings)
FindIdentity = Callable[..., Any]
#: fixed_regions(header, rows, cols) -> list[Finding]
FixedRegions = Callable[[Dataset, int, int], list]


def frames_to_examine(count: int) -> list[int]:
    """Burned-in annotation is drawn by the device on every frame alike; reading the first,
    middle and last frame finds it in a cine loop without OCR of every frame.  The boxes
    found are removed from every frame."""
    return sorted({0, count // 2, count - 1})


def clean_pixels(
    ds: Dataset,
    original_header: Dataset,
    *,
    remove_all_text: bool = False,
    delta: IdentityDelta | None = None,
    original_group: bytes | None = None,
    find: FindIdentity | None = None,
    fixed: FixedRegions | None = None,
    keep_original: bool = True,
) -> PixelCleanResult:
    """Remove identity burned into ``ds``'s pixels (in place) and report what was done.

    ``original_group`` is the original pixel-group bytes as they lie in the file (kept
    whenever pixels are re-encoded, so restore is byte-identical); without it they are
    encoded from ``ds``.  With ``keep_original`` False (the caller keeps no identity
    delta) they are neither encoded nor kept: ``pixels`` then only says that the pixel
    data changed.  ``find`` and ``fixed`` default to :mod:`safepacs.deid.pixels.findings`.
    Raises :class:`PixelError` for pixel data that cannot be decoded or written back.
    """
    started = time.perf_counter()
    if find is None or fixed is None:
        find, fixed = _detector(find, fixed)
    lay = layout(ds) if pixel_keyword(ds) == "PixelData" else None
    # a compressed cine is decoded a frame at a time, never whole (decoded_frames)
    stored = None if lay is not None and not lay.native and lay.frames > 1 else stored_frames(ds)
    lay = stored.layout if stored is not None else lay
    assert lay is not None
    result = PixelCleanResult()
    seen: dict[tuple, Any] = {}
    for finding in fixed(original_header, lay.rows, lay.columns):
        seen.setdefault(_key(finding), finding)
    examined = frames_to_examine(lay.frames)
    for index in examined:
        if stored is None:
            try:
                frame = display_frame(decoded_frame(ds, lay, index), 0, ds)
            except PixelError:  # a frame not found alone: the whole loop, as before
                stored = stored_frames(ds)
        if stored is not None:
            frame = display_frame(stored, index, ds)
        try:
            report = find(frame, original_header, remove_all_text=remove_all_text)
        except Exception as exc:  # noqa: BLE001 - OCR missing or failing: fail closed, no values
            raise PixelError(f"text detection failed ({exc.__class__.__name__})") from None
        result.ocr_seconds += float(report.ocr_seconds)
        result.detect_seconds += float(report.detect_seconds)
        for finding in report.findings:
            seen.setdefault(_key(finding), finding)
    result.frames_examined = len(examined)
    findings = list(seen.values())
    result.boxes_found = len(findings)
    removed = [f for f in findings if f.remove]
    result.boxes_removed = len(removed)
    result.rules = sorted(str(f.rule) for f in removed)
    result.kept_rules = sorted(str(f.rule) for f in findings if not f.remove)
    rects = merge([r for f in removed if (r := padded(f.box.x, f.box.y, f.box.w, f.box.h,
                                                       lay.rows, lay.columns)) is not None])
    result.rects = rects
    if rects:
        # compressed, or laid out so that boxes need decoding
        reencoded = stored is None or stored.buffer is None
        if not keep_original:
            original_group = None
        elif original_group is None and reencoded:
            original_group = _encode_group(ds)
        if delta is not None:
            _record_header(ds, delta)
        if stored is None:
            write_back_frames(ds, lay, _redacted(decoded_frames(ds, lay), rects, ds))
            result.pixels = PixelDelta(group=original_group)
            result.seconds = time.perf_counter() - started
            return result
        fills = [darkest_value(stored, f, ds) for f in range(lay.frames)]
        patches = redact(stored.array, rects, fills)
        write_back(ds, stored)
        if not reencoded:
            result.pixels = PixelDelta(
                stored.array.dtype.str,
                [(p.frame, p.rect.x, p.rect.y, p.rect.w, p.rect.h, p.data) for p in patches],
            )
        else:
            result.pixels = PixelDelta(group=original_group)
    result.seconds = time.perf_counter() - started
    return result


def _redacted(frames: Iterator[tuple[int, Stored]], rects: list[Rect], ds: Dataset,
              ) -> Iterator[tuple[int, Stored]]:
    """Each frame with ``rects`` filled by its own darkest value, as it is decoded."""
    for f, one in frames:
        redact(one.array, rects, [darkest_value(one, 0, ds)])
        yield f, one


def restore_pixels(ds: Dataset, pixels: PixelDelta) -> bytes | None:
    """Give ``ds`` (header already restored) its original pixel data back.

    Returns the original pixel-group bytes to write verbatim (compressed originals), or
    None after putting the patches back into ``ds``'s loaded, uncompressed PixelData.
    """
    if pixels.group is not None:
        return pixels.group
    stored = stored_frames(ds)
    if stored.buffer is None or stored.array.dtype.str != pixels.dtype:
        raise PixelError("pixel data of the de-identified file does not match its identity delta")
    try:
        unredact(stored.array, [Patch(f, Rect(x, y, w, h), data)
                                for f, x, y, w, h, data in pixels.patches])
    except (ValueError, IndexError):
        raise PixelError("pixel patches of the identity delta do not fit the image") from None
    ds.PixelData = bytes(stored.buffer)
    return None


def _detector(find: FindIdentity | None, fixed: FixedRegions | None) -> tuple[FindIdentity, FixedRegions]:
    try:
        from safepacs.deid.pixels import findings
    except ImportError:
        raise PixelError("pixel cleaning is not available (text detector not installed)") from None
    return find or findings.find_identity, fixed or findings.fixed_regions


def _key(finding: Any) -> tuple:
    b = finding.box
    return (int(b.x), int(b.y), int(b.w), int(b.h), bool(finding.remove))


def _record_header(ds: Dataset, delta: IdentityDelta) -> None:
    """Originals of what writing back may change, for restore."""
    for tag in TOUCHED_TAGS:
        if tag >> 16 != _PIXEL_GROUP:
            delta.record((), ds, tag)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        delta.record((META,), meta, _TRANSFER_SYNTAX)


def _encode_group(ds: Dataset) -> bytes:
    """The pixel-group elements encoded in ``ds``'s own transfer syntax."""
    tsuid = ds.file_meta.TransferSyntaxUID
    fp = DicomBytesIO()
    fp.is_implicit_VR = tsuid == ImplicitVRLittleEndian
    fp.is_little_endian = tsuid != ExplicitVRBigEndian
    for tag in sorted(t for t in ds.keys() if t >> 16 == _PIXEL_GROUP):
        write_data_element(fp, ds[tag])
    return fp.getvalue()


def unload_pixels(ds: Dataset) -> None:
    """Drop loaded pixel-group elements (unchanged data is then copied from the file)."""
    for tag in [t for t in ds.keys() if t >> 16 == _PIXEL_GROUP]:
        del ds[tag]


