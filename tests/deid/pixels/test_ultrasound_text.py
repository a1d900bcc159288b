"""Ultrasound-style text: small, close lines of bright or coloured type on a black panel
beside a speckle sector, as GE, Philips, Siemens and others print it.  Images are built
here with PIL; every name and number is made up."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset

from safepacs.deid.pixels import detect
from safepacs.deid.pixels.findings import Box, find_identity
from safepacs.deid.pixels.frames import display_frame, stored_frames
from tests.deid.pixels.conftest import covered, image, ocr_missing

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
CJK = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"


def _missing() -> str | None:
    try:
        ImageFont.truetype(FONT, 10)
    except OSError:
        return "DejaVuSans not found: install the Debian package fonts-dejavu"
    return ocr_missing()


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def sector_frame(seed: int, rows: int = 600, cols: int = 800) -> np.ndarray:
    """Black frame, a speckle sector in the middle: (rows, cols, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    rad = np.hypot(yy - 60, xx - cols // 2)
    ang = np.degrees(np.arctan2(xx - cols // 2, yy - 60))
    sector = (rad < rows * 0.8) & (rad > 20) & (np.abs(ang) < 35)
    speckle = np.clip(rng.rayleigh(45.0, (rows, cols)), 0, 255)
    grey = np.where(sector, speckle, 0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def draw_lines(rgb: np.ndarray, x: int, y: int, lines: list[str], colour, size: int = 10,
               pitch: int = 14) -> list[Box]:
    """Draw ``lines`` one under the other (``pitch`` px apart); their ink boxes."""
    im = Image.fromarray(rgb)
    d = ImageDraw.Draw(im)
    font = ImageFont.truetype(FONT, size)
    boxes = []
    for i, text in enumerate(lines):
        x0, y0, x1, y1 = d.textbbox((x, y + i * pitch), text, font=font)
        d.text((x, y + i * pitch), text, font=font, fill=colour)
        boxes.append(Box(x0, y0, x1 - x0, y1 - y0))
    rgb[...] = np.asarray(im)
    return boxes


def header() -> Dataset:
    ds = Dataset()
    ds.Modality = "OT"
    ds.PatientName = "Lindqvist^Yuki"
    ds.PatientID = "58390467"
    return ds


def test_close_lines_of_a_side_panel_are_proposed_one_by_one():
    # The black between close bright lines is a thin dark mark to the black-hat: it
    # welded the panel into one square blob, taken for a single glyph and never read.
    rgb = sector_frame(1)
    lines = ["Lindqvist^Yuki", "ID 58390467", "Gn 55  DR 63", "Depth 14 cm"]
    boxes = draw_lines(rgb, 690, 8, lines, (235, 235, 235))
    frame = rgb[..., 0].copy()
    proposals = detect.propose(frame)
    for box in boxes:
        own = [p for p in proposals if p.y <= box.y and box.y + box.h <= p.y + p.h
               and p.x <= box.x + 2 and box.x + box.w <= p.x + p.w + 2 and p.h < 2 * box.h]
        assert own, "line not proposed on its own"


def test_name_and_id_in_a_side_panel_are_removed_and_settings_kept():
    rgb = sector_frame(2)
    boxes = draw_lines(rgb, 690, 8, ["Lindqvist^Yuki", "ID 58390467", "Gn 55  DR 63"],
                       (235, 235, 235))
    report = find_identity(rgb[..., 0].copy(), header())
    assert covered(boxes[0], report.findings) >= 0.9
    assert covered(boxes[1], report.findings) >= 0.9
    assert covered(boxes[2], report.findings) == 0.0


@pytest.mark.parametrize("colour", [(220, 0, 0), (20, 20, 255), (0, 150, 0)])
def test_red_blue_or_green_name_on_a_black_panel_is_removed(colour):
    # Luma put pure red at 76 and blue at 29 of 255: anti-aliased 10 px type in those
    # colours fell under the stroke threshold beside a bright sector, and was kept.
    rgb = sector_frame(3)
    boxes = draw_lines(rgb, 8, 200, ["Lindqvist^Yuki", "ID 58390467"], colour)
    ds = image(rgb[None], "RGB")
    frame = display_frame(stored_frames(ds), 0, ds)
    report = find_identity(frame, header())
    for box in boxes:
        assert covered(box, report.findings) >= 0.9


def test_coloured_text_on_a_light_form_keeps_its_contrast():
    rgb = np.full((200, 400, 3), 245, np.uint8)
    draw_lines(rgb, 20, 40, ["Lindqvist^Yuki"], (230, 40, 40), size=14)
    ds = image(rgb[None], "RGB")
    frame = display_frame(stored_frames(ds), 0, ds)
    assert int(frame[30:70, 15:200].min()) < 150  # red ink stays darker than the paper


@pytest.mark.parametrize("colour", [(255, 255, 255), (240, 230, 40)])
def test_name_typed_into_the_speckle_sector_is_removed(colour):
    # On speckle, the strokes weld with the texture into a blob larger than any line,
    # which was dropped whole: text typed onto the image itself was never read.
    rgb = sector_frame(5)
    boxes = draw_lines(rgb, 360, 300, ["Lindqvist^Yuki", "ID 58390467"], colour, size=11,
                       pitch=17)
    ds = image(rgb[None], "RGB")
    report = find_identity(display_frame(stored_frames(ds), 0, ds), header())
    for box in boxes:
        assert covered(box, report.findings) >= 0.9


def test_speckle_alone_yields_no_line_to_read():
    frame = sector_frame(6)[..., 0].copy()
    lines = [p for p in detect.propose(frame) if p.w > detect.GLYPH_ASPECT * p.h]
    assert len(lines) <= 2


def radiograph_frame(seed: int, rows: int = 600, cols: int = 520) -> np.ndarray:
    """A smooth grey body on a darker field with film noise: (rows, cols, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    body = 60 + 90 * np.exp(-(((xx - cols / 2) / (cols / 4)) ** 2)) * np.clip(yy / rows + 0.3, 0, 1)
    grey = np.clip(body + rng.normal(0, 6, (rows, cols)), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


@pytest.mark.parametrize(("plate", "ink"), [(215, 30), (190, 60)])
def test_9px_dark_name_and_id_on_light_plates_are_removed_as_the_files_own(plate, ink):
    # Each line on a plate of its own, as a label printer strips them: each is read on
    # its own, and must read as the file's own name and ID, not merely as "some number".
    rgb = radiograph_frame(7)
    lines = ["Lindqvist Yuki", "ID 58390467", "kV 70  mAs 2.5"]
    im = Image.fromarray(rgb)
    d = ImageDraw.Draw(im)
    font = ImageFont.truetype(FONT, 9)
    for i, text in enumerate(lines):
        x0, y0, x1, y1 = d.textbbox((24, 24 + 28 * i), text, font=font)
        d.rectangle((x0 - 5, y0 - 5, x1 + 5, y1 + 5), fill=(plate,) * 3)
    rgb[...] = np.asarray(im)
    boxes = draw_lines(rgb, 24, 24, lines, (ink,) * 3, size=9, pitch=28)
    report = find_identity(rgb[..., 0].copy(), header())
    for box, rule in zip(boxes[:2], ["header:PatientName", "header:PatientID"], strict=True):
        assert covered(box, report.findings) >= 0.9
        assert rule in {f.rule for f in report.findings if f.remove and covered(box, [f]) > 0.5}
    assert covered(boxes[2], report.findings) == 0.0


@pytest.mark.parametrize(("name", "size"), [("林晓东", 11), ("赵勇", 12)])
def test_small_chinese_name_above_a_settings_line_on_one_plate_is_removed(name, size):
    # Read as one block, the plate gave "Gn55 DR63" at confidence 90 and nothing of the
    # name above it: Tesseract's layout dropped the line of small ideographs.
    rgb = radiograph_frame(11)
    im = Image.fromarray(rgb)
    d = ImageDraw.Draw(im)
    cjk = ImageFont.truetype(CJK, size)
    latin = ImageFont.truetype(FONT, size - 1)
    x0, y0, x1, _ = d.textbbox((24, 30), name, font=cjk)
    d.rectangle((18, 25, 24 + d.textbbox((0, 0), "Gn 55  DR 63", font=latin)[2] + 6,
                 30 + 2 * size + 9), fill=(215,) * 3)
    d.text((24, 30), name, font=cjk, fill=(30,) * 3)
    d.text((24, 30 + size + 3), "Gn 55  DR 63", font=latin, fill=(30,) * 3)
    rgb[...] = np.asarray(im)
    ds = header()
    ds.PatientName = name
    report = find_identity(rgb[..., 0].copy(), ds)
    box = Box(x0, y0, x1 - x0, size)
    assert covered(box, report.findings) >= 0.9
    assert "header:PatientName" in {f.rule for f in report.findings if f.remove}
