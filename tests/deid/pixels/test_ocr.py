"""Tesseract on binarised crops: both polarities, plates, Latin and Chinese."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from safepacs.deid.pixels import detect, ocr
from safepacs.deid.pixels.decide import fold, pattern_rule
from safepacs.synth.burned import fonts_available
from tests.deid.pixels.conftest import tesseract_missing

LATIN = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
CJK = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"


pytestmark = [
    pytest.mark.skipif(tesseract_missing() is not None, reason=tesseract_missing() or ""),
    pytest.mark.skipif(fonts_available() is not None, reason=fonts_available() or ""),
]


def line(text: str, font: str, size: int, ink: int, paper: int, *, plate: int | None = None,
         noise: int = 6) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A noisy frame with one line drawn on it, and the line's box with a small margin."""
    rng = np.random.default_rng(len(text) + size)
    frame = np.full((size * 4, size * (len(text) + 4)), paper, np.float32)
    frame += rng.normal(0, noise, frame.shape)
    img = Image.fromarray(frame.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    f = ImageFont.truetype(font, size)
    left, top, right, bottom = draw.textbbox((size, size), text, font=f)
    if plate is not None:
        draw.rectangle((left - 8, top - 8, right + 8, bottom + 8), fill=plate)
    draw.text((size, size), text, font=f, fill=ink)
    m = 6
    return np.asarray(img), (left - m, top - m, right - left + 2 * m, bottom - top + 2 * m)


def read(frame: np.ndarray, box: tuple[int, int, int, int]) -> list[str]:
    return [fold(t) for t in ocr.read(frame, *box).texts]


@pytest.mark.parametrize(
    ("ink", "paper", "plate"),
    [(240, 20, None), (20, 230, None), (150, 90, None), (10, 60, 220), (250, 200, 0)],
    ids=["light-on-dark", "dark-on-light", "low-contrast", "dark-on-light-plate", "light-on-black-plate"],
)
def test_latin_line_is_read_in_any_polarity_and_contrast(ink, paper, plate):
    frame, box = line("KAUFMAN SCOTT 03.09.2012", LATIN, 28, ink, paper, plate=plate)
    assert fold("KAUFMAN SCOTT") in read(frame, box)[0]



@pytest.mark.parametrize("text", ["Lindqvist Yuki", "Marchetti Oona 58390467"])
@pytest.mark.parametrize(
    ("ink", "paper", "plate"),
    [(30, 120, 215), (60, 140, 190), (235, 30, None)],
    ids=["dark-on-light-plate", "dark-on-grey-plate", "light-on-dark"],
)
def test_9px_line_is_read_as_drawn(text, ink, paper, plate):
    # Small type was binarised, then scaled up: a staircase of 4x4 blocks, read
    # "11ndgv15tyuk1" for "Lindqvist Yuki" and "58399467" for "58390467".
    frame, box = line(text, LATIN, 9, ink, paper, plate=plate)
    assert fold(text) in read(frame, box)[0]


def test_small_page_keeps_grey_edges_and_drops_what_is_not_ink():
    frame, box = line("Yuki 58390467", LATIN, 9, 30, 120, plate=215)
    x, y, w, h = box
    ink, _, height = detect.ink_masks(frame, x, y, w, h)[0]
    page = ocr.page_for(ink, height, frame[y : y + h, x : x + w])
    inner = page[ocr._BORDER : -ocr._BORDER, ocr._BORDER : -ocr._BORDER]
    assert inner.shape[0] > 3 * h  # scaled up to about TARGET_LINE
    assert inner.min() < 60 and inner.max() == 255  # dark ink on white, whatever the plate
    assert np.count_nonzero((inner > 60) & (inner < 200)) > 0.05 * np.count_nonzero(inner < 200)
    # the plate's edge and the noise around it are not ink: white on the page
    assert (inner[:, :8] == 255).all() and (inner[:8] == 255).all()

def test_chinese_name_is_read():
    frame, box = line("姓名: 王建国", CJK, 30, 235, 30)
    assert any(fold("王建国") in t for t in read(frame, box))


def test_resident_id_reads_as_an_18_digit_number():
    frame, box = line("110105194912310021", LATIN, 22, 200, 40)
    texts = ocr.read(frame, *box).texts
    assert any(pattern_rule(t) == "pattern:resident-id" for t in texts)


def test_blank_box_reads_as_nothing():
    frame = np.full((60, 200), 90, np.uint8)
    reading = ocr.read(frame, 10, 10, 150, 40)
    assert reading.texts == () and reading.blobs == 0


def test_readings_come_best_first_with_confidences():
    frame, box = line("Portable", LATIN, 30, 250, 10)
    reading = ocr.read(frame, *box)
    confs = [c for _, c in reading.readings]
    assert confs == sorted(confs, reverse=True) and reading.confidence == confs[0] > 60


def test_one_reader_per_thread_is_reused():
    assert ocr._api() is ocr._api()


def test_a_block_read_with_a_line_missing_is_read_again_line_by_line():
    ink = np.zeros((30, 60), np.uint8)
    ink[2:12, 5:55:3] = 1  # two lines of strokes
    ink[18:27, 5:55:3] = 1
    assert ocr._lines_lost([("Gn55 DR63", 90.0)], ink)
    assert not ocr._lines_lost([("Gn55 DR63", 90.0), ("Lindqvist\nGn55 DR63", 80.0)], ink)
