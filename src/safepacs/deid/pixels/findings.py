"""One 8-bit frame in, the boxes that carry identity out: the detector's entry point.

Stages: :mod:`.regions` (boxes cleaned by device and ultrasound rules, no OCR needed),
:mod:`.detect` (cheap text-line proposals on a downscaled frame), :mod:`.ocr`
(Tesseract on each binarised crop only) and :mod:`.decide` (header values, patterns,
markers).  The caller blanks removed boxes, with its own margin, in every frame.

Boxes whose ink is about as wide as tall (one glyph: "L", "R", "左") are not read in the
default mode: nothing that short identifies anyone, and they are mostly laterality
markers or bits of anatomy.  With ``remove_all_text`` they are read, and removed unless
they are markers.  Nothing here logs or returns text: rules name why, never what.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset

from safepacs.deid.pixels import decide as _decide
from safepacs.deid.pixels import detect, ocr, regions
from safepacs.deid.pixels.redact import padded


@dataclass(frozen=True)
class Box:
    """Full-resolution pixel box of a frame; x, y = column, row of the top-left corner."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Finding:
    """One box and what to do with it; ``rule`` says why (never the text)."""

    box: Box
    remove: bool
    rule: str


@dataclass
class FrameReport:
    findings: list[Finding]
    ocr_seconds: float
    detect_seconds: float


def _check(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.ndim != 2 or frame.dtype != np.uint8:
        raise ValueError("frame must be a 2-D uint8 display image")


def fixed_regions(header: Dataset, rows: int, cols: int) -> list[Finding]:
    """Device and ultrasound rules alone, for frames that are not OCR'd."""
    return [
        Finding(Box(r.x, r.y, r.w, r.h), True, r.rule)
        for r in regions.fixed_regions(header, rows, cols)
    ]


def _inside(p: detect.Proposal, fixed: list[Finding]) -> bool:
    return any(
        f.box.x <= p.x and f.box.y <= p.y and p.x + p.w <= f.box.x + f.box.w
        and p.y + p.h <= f.box.y + f.box.h
        for f in fixed
    )


def _in_border(p: detect.Proposal, rows: int, cols: int) -> bool:
    band = _decide.BORDER_BAND
    return (
        p.y + p.h <= rows * band
        or p.y >= rows * (1 - band)
        or p.x + p.w <= cols * band
        or p.x >= cols * (1 - band)
    )


def _glyph_sized(frame: np.ndarray, p: detect.Proposal) -> bool:
    """One glyph ("L", "左"): the box, and the ink inside it, about as wide as tall.

    The ink decides, not the box alone: a label plate makes a small two-character name
    (高强) look square.
    """
    if p.w > detect.GLYPH_ASPECT * p.h:
        return False
    masks = detect.ink_masks(frame, p.x, p.y, p.w, p.h)
    if not masks:
        return True
    ys, xs = np.nonzero(masks[0][0])
    return bool(np.ptp(xs) + 1 <= detect.GLYPH_ASPECT * (np.ptp(ys) + 1))


def find_identity(
    frame: np.ndarray, header: Dataset, *, remove_all_text: bool = False
) -> FrameReport:
    """Boxes of ``frame`` that carry identity (``remove``) and the text boxes kept.

    ``frame``: 2-D uint8 display image (0 = black), windowed, MONOCHROME1 already
    inverted, colour already grey.  ``header``: the original dataset, for the file's
    own identifying values and for device / ultrasound regions.
    """
    _check(frame)
    rows, cols = frame.shape
    t0 = time.perf_counter()
    proposals = detect.propose(frame)
    detect_seconds = time.perf_counter() - t0

    findings = fixed_regions(header, rows, cols)
    fixed = list(findings)
    t1 = time.perf_counter()
    # Built on the first box read, not before: most frames (a radiograph without text)
    # have none, and collecting every identifying form of the header costs ~20 ms.
    needles = functools.cache(lambda: _decide.header_needles(header))

    def enough(text: str, conf: float) -> bool:  # one sure identifying reading decides
        return conf >= ocr.DOUBTFUL and _decide.identity_rule(text, needles(), conf) is not None

    for p in proposals:
        glyph = _glyph_sized(frame, p)
        if (glyph and not remove_all_text) or _inside(p, fixed):
            continue
        reading = ocr.read(frame, p.x, p.y, p.w, p.h, single_glyph=glyph, enough=enough)
        shape = _decide.BoxShape(
            glyph_sized=glyph,
            blobs=reading.blobs,
            aspect=p.w / max(p.h, 1),
            in_border=_in_border(p, rows, cols),
        )
        verdict = _decide.decide(reading.readings, shape, needles(), remove_all_text=remove_all_text)
        if verdict.rule == "keep:unreadable" and reading.blobs == 0:
            continue  # nothing OCR could even see: not text, not worth a line in a report
        findings.append(Finding(Box(p.x, p.y, p.w, p.h), verdict.remove, verdict.rule))
    return FrameReport(findings, time.perf_counter() - t1, detect_seconds)


def legible_identity(frame: np.ndarray, header: Dataset) -> list[str]:
    """Rule names (never text) of identifying values still readable in ``frame``.

    For verify-deid: ``header`` is the original (or whatever holds the identifiers);
    every line-shaped text box is read and checked against header values and patterns.
    """
    _check(frame)
    needles = _decide.header_needles(header)
    found: set[str] = set()
    for p in detect.propose(frame):
        if _glyph_sized(frame, p):
            continue
        hits = [(rule, text, conf) for text, conf in ocr.read(frame, p.x, p.y, p.w, p.h).readings
                if (rule := _decide.identity_rule(text, needles, conf))]
        rule = next((r for r, t, c in hits if not _decide.needs_second_look(r, t, c)), None)
        if rule is None and hits:
            rule = _read_again(frame, p, [(r, t) for r, t, _ in hits], needles)
        if rule:
            found.add(rule)
    return sorted(found)


#: Margin of the second look, as a fraction of the box's height (at least 2 px).
SECOND_LOOK_MARGIN = 0.25


def _read_again(frame: np.ndarray, p: detect.Proposal, weak: list[tuple[str, str]],
                needles: _decide.HeaderNeedles) -> str | None:
    """The first rule of ``weak`` (rule, text) that the box, read again a few pixels
    wider, gives again from about the same text; None when none comes back.

    A pattern with no header value behind it (a short Chinese name, a label, a number
    read unsurely) is a report of a leak only if a person could read it.  Text reads the
    same from a slightly different crop; the noise of anatomy or dithering does not: a
    clavicle's edge read "上此." once, and nothing like a name 8 px to the side.
    """
    rows, cols = frame.shape
    box = padded(p.x, p.y, p.w, p.h, rows, cols, max(2, round(p.h * SECOND_LOOK_MARGIN)))
    if box is None:
        return None
    readings = ocr.read(frame, box.x, box.y, box.w, box.h).readings
    again = [(_decide.identity_rule(t, needles, c), t) for t, c in readings]
    return next((rule for rule, text in weak
                 if any(r == rule and _decide.same_reading(t, text) for r, t in again)), None)
