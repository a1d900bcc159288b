"""Read one proposed text box with Tesseract (in-process, through tesserocr).

Tesseract reads clean black-on-white lines well and a noisy radiograph not at all, so
each box is binarised first (:func:`safepacs.deid.pixels.detect.ink_masks`: either
polarity, any background), cleared of specks, scaled so that a line is about
:data:`TARGET_LINE` px tall, and framed in white.  Small type is scaled up from its grey
levels, not from the binary mask (see :func:`page_for`).  Traineddata come from Debian's
``tesseract-ocr-eng`` and ``tesseract-ocr-chi-sim`` (directory found, or given in
``SAFEPACS_TESSDATA``); nothing is downloaded.  One ``PyTessBaseAPI`` per language and
thread, created on first use: the API is not thread-safe and loading the models costs far
more than reading a line.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from safepacs.deid.pixels import detect

TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
)
LANGUAGES = "eng+chi_sim"
#: Line height (ascender to descender) Tesseract's LSTM models read best at.
TARGET_LINE = 32
_BORDER = 12


class OcrUnavailable(RuntimeError):
    """Tesseract or its eng/chi_sim traineddata are missing."""


@dataclass(frozen=True)
class Reading:
    """What OCR made of one crop: every reading with its mean confidence (0-100), best
    first, and how many ink blobs the binarised crop held.  Texts are PHI: never log them.
    """

    readings: tuple[tuple[str, float], ...]
    blobs: int

    @property
    def text(self) -> str:
        return self.readings[0][0] if self.readings else ""

    @property
    def confidence(self) -> float:
        return self.readings[0][1] if self.readings else 0.0

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(t for t, _ in self.readings)


def tessdata_dir() -> str:
    """The directory holding eng and chi_sim traineddata (SAFEPACS_TESSDATA wins)."""
    candidates = [os.environ.get("SAFEPACS_TESSDATA", ""), *TESSDATA_DIRS]
    for d in candidates:
        if d and all((Path(d) / f"{lang}.traineddata").is_file() for lang in LANGUAGES.split("+")):
            return d
    raise OcrUnavailable(
        "Tesseract traineddata for eng and chi_sim not found: install the Debian packages "
        "tesseract-ocr-eng and tesseract-ocr-chi-sim"
    )


_local = threading.local()


def _api(lang: str = LANGUAGES):
    apis = getattr(_local, "apis", None)
    if apis is None:
        apis = _local.apis = {}
    api = apis.get(lang)
    if api is None:
        # Tesseract's OpenMP threads fight each other (and the caller's workers) over
        # a few cores; one thread per reader is faster for short lines.
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        try:
            import tesserocr
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise OcrUnavailable("the tesserocr package is not installed") from exc
        api = tesserocr.PyTessBaseAPI(path=tessdata_dir(), lang=lang, oem=tesserocr.OEM.LSTM_ONLY)
        # Pages arrive black on white already; Tesseract's own retry of poor lines as
        # inverted text would only double the time spent on noise.
        api.SetVariable("tessedit_do_invert", "0")
        apis[lang] = api
        _local.psm = tesserocr.PSM
    return api


def _has_cjk(text: str) -> bool:
    return any("\u3400" <= c <= "\u9fff" for c in text)


def _run(api, page: np.ndarray, psm: int) -> tuple[str, float]:
    api.SetPageSegMode(psm)
    page = np.ascontiguousarray(page)
    api.SetImageBytes(page.tobytes(), page.shape[1], page.shape[0], 1, page.shape[1])
    text = api.GetUTF8Text().strip()
    conf = float(api.MeanTextConf()) if text else 0.0
    api.Clear()
    return text, conf


def line_count(ink: np.ndarray) -> int:
    """Text lines in an ink mask."""
    return len([r for r in detect.line_runs(ink) if r >= 3])


def _drop_specks(ink: np.ndarray, line_h: int) -> np.ndarray:
    """Small blobs that belong to no line: above or below every glyph, or at either end
    of the box set apart from the rest.  They are corners of a label plate or of an edge,
    which Tesseract reads as letters, or which make it read nothing at all."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if n <= 2:
        return ink
    cols = ink.shape[1]
    limit = max(3, line_h // 2)
    big = [i for i in range(1, n) if stats[i, 3] >= limit]
    line_rows = np.zeros(ink.shape[0], bool)
    for i in big:
        line_rows[stats[i, 1] : stats[i, 1] + stats[i, 3]] = True
    out = ink.copy()
    for i in range(1, n):
        x, y, w, h, _ = stats[i]
        if w >= limit or h >= limit:
            continue
        if big and not line_rows[y : y + h].any():
            out[labels == i] = 0
            continue
        if limit <= x <= cols - limit - w:
            continue
        others = np.count_nonzero((labels > 0) & (labels != i), axis=0) > 0
        inner = others[x + w : x + w + 3] if x < limit else others[max(0, x - 3) : x]
        if not inner.any():
            out[labels == i] = 0
    return out


def page_for(ink: np.ndarray, line_h: int, grey: np.ndarray | None = None) -> np.ndarray:
    """Black ink on white, lines about :data:`TARGET_LINE` px tall, white border.

    Small type (9 px on a label plate) has strokes a pixel or two wide: its binary mask
    scaled up is a staircase that Tesseract misreads ("0" as "9", "1" as "2", "q" as
    "g").  With ``grey``, the crop the mask was cut from, a page to be scaled up is made
    from the grey levels instead (:func:`_grey_page`), so the anti-aliased edges that
    tell those glyphs apart survive.
    """
    f = float(np.clip(TARGET_LINE / line_h, 0.3, 4.0)) if line_h else 1.0
    if f > 1.15 and grey is not None and grey.shape == ink.shape:
        page = _grey_page(ink, grey, f)
    else:
        page = np.where(ink > 0, 0, 255).astype(np.uint8)
        if abs(f - 1.0) > 0.15:
            interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
            page = cv2.resize(page, None, fx=f, fy=f, interpolation=interp)
            _, page = cv2.threshold(page, 127, 255, cv2.THRESH_BINARY)
    return cv2.copyMakeBorder(page, _BORDER, _BORDER, _BORDER, _BORDER, cv2.BORDER_CONSTANT,
                              value=255)


def _grey_page(ink: np.ndarray, grey: np.ndarray, f: float) -> np.ndarray:
    """The grey crop as dark ink on white, scaled by ``f`` (> 1) with Lanczos.

    The ink's level (median under the mask) goes to black and the level just around it
    to white, so either polarity and any plate come out alike; only the ink and the
    pixels touching it are kept, so whatever the mask left out (specks, a plate's edge,
    speckle) stays out.
    """
    on = ink > 0
    near = cv2.dilate(ink, np.ones((3, 3), np.uint8)) > 0
    ring = near & ~on
    ink_level = float(np.median(grey[on]))
    background = float(np.median(grey[ring] if ring.any() else grey[~on]))
    if abs(background - ink_level) < 4:  # no contrast to speak of: the mask is all there is
        page = np.where(on, 0, 255).astype(np.float32)
    else:
        page = (grey.astype(np.float32) - ink_level) * (255.0 / (background - ink_level))
        page[~near] = 255
    page = cv2.resize(np.clip(page, 0, 255), None, fx=f, fy=f, interpolation=cv2.INTER_LANCZOS4)
    return np.clip(np.rint(page), 0, 255).astype(np.uint8)


#: Below this mean confidence a reading is doubtful: try the other polarity / chi_sim.
DOUBTFUL = 75.0
#: A mixed-language reading holding ideographs is re-read with chi_sim alone below this.
SURE_CJK = 85.0


def _run_line(api, page: np.ndarray, mode: int) -> tuple[str, float]:
    """One reading; a single line that reads as nothing is tried again as a raw line
    (Tesseract's line finder sometimes drops a clean line of ideographs)."""
    text, conf = _run(api, page, mode)
    if not text and mode == _local.psm.SINGLE_LINE:
        text, conf = _run(api, page, _local.psm.RAW_LINE)
    return text, conf


#: Called with each reading as it comes; True stops reading (the box is decided).
Enough = Callable[[str, float], bool]


def _read_page(page: np.ndarray, mode: int, enough: Enough | None) -> list[tuple[str, float]]:
    text, conf = _run_line(_api(), page, mode)
    out = [(text, conf)] if text else []
    if text and enough is not None and enough(text, conf):
        return out
    if conf < DOUBTFUL or (_has_cjk(text) and conf < SURE_CJK):
        # chi_sim alone, as a line and as a raw line: either may fail on a clean line
        # of ideographs that the other reads (Tesseract's line finding is erratic there)
        chi = _api("chi_sim")
        modes = [mode, _local.psm.RAW_LINE] if mode == _local.psm.SINGLE_LINE else [mode]
        for m in modes:
            other, other_conf = _run(chi, page, m)
            if other and other not in (t for t, _ in out):
                out.append((other, other_conf))
            if other_conf >= SURE_CJK or (enough is not None and other and enough(other, other_conf)):
                break
    return out


def _read_lines(ink: np.ndarray, grey: np.ndarray, enough: Enough | None) -> list[tuple[str, float]]:
    """Each line of a block read on its own, for blocks that read poorly as a whole."""
    out: list[tuple[str, float]] = []
    for top, bottom in detect.line_spans(ink):
        if bottom - top < 3:
            continue
        page = page_for(ink[top:bottom], bottom - top, grey[top:bottom])
        out += _read_page(page, _local.psm.SINGLE_LINE, enough)
    return out


def _accepted(readings: list[tuple[str, float]]) -> bool:
    """A reading good enough to stop trying: confident and more than a stray mark."""
    return any(c >= DOUBTFUL and sum(ch.isalnum() for ch in t) >= 1 for t, c in readings)


def _lines_lost(readings: list[tuple[str, float]], ink: np.ndarray) -> bool:
    """Whether every reading of a block has fewer lines than its ink.  Tesseract's block
    layout drops a line of small ideographs above a Latin one and reads the rest surely:
    a name lost behind "Gn 55 DR 63".  Only lines at least half as tall as the tallest
    count: a row of specks above a label is no line Tesseract should have read, and its
    low-confidence re-readings only give noise a chance to match a short name."""
    runs = detect.line_runs(ink)
    lines = len([r for r in runs if r >= max(3, max(runs, default=0) / 2)])
    return all(len([ln for ln in t.splitlines() if ln.strip()]) < lines for t, _ in readings)


def read(
    frame: np.ndarray,
    x: int,
    y: int,
    w: int,
    h: int,
    *,
    single_glyph: bool = False,
    enough: Enough | None = None,
) -> Reading:
    """OCR the box (x, y, w, h) of a display frame (2-D uint8).

    ``eng+chi_sim`` reads mixed lines, but it often takes Chinese given names for Latin
    letters ("上官" as "LE"); when the line reads poorly, or holds ideographs and reads
    less than surely, ``chi_sim`` alone reads it again.  A poor reading is retried with
    the other ink polarity.  Every reading is kept (best first), so the decision sees them
    all;
    ``enough`` may stop the reading early (e.g. once one reading is identity).
    """
    candidates = detect.ink_masks(frame, x, y, w, h)
    if not candidates:
        return Reading((), 0)
    _api()
    psm = _local.psm
    readings: list[tuple[str, float]] = []
    blobs = candidates[0][1]
    grey = frame[y : y + h, x : x + w]
    for ink, n, height in candidates:
        ink = _drop_specks(ink, height)
        one_line = line_count(ink) <= 1
        mode = psm.SINGLE_CHAR if single_glyph else psm.SINGLE_LINE if one_line else psm.SINGLE_BLOCK
        got = _read_page(page_for(ink, height, grey), mode, enough)
        if not one_line and not single_glyph and (not _accepted(got) or _lines_lost(got, ink)):
            got += _read_lines(ink, grey, enough)  # a stray mark may have made a second "line"
        readings += got
        if _accepted(got) or (enough is not None and any(enough(t, c) for t, c in got)):
            blobs = n
            break
    best: dict[str, float] = {}
    for text, conf in readings:
        best[text] = max(conf, best.get(text, 0.0))
    return Reading(tuple(sorted(best.items(), key=lambda r: -r[1])), blobs)
