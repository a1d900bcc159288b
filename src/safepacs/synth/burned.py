"""Synthetic frames with text burned into the pixels, and the answer key to that text.

Pixel cleaning is only as good as the images it was checked on.  This module draws fake
identity (Latin and Chinese names, 18-digit resident ID numbers, dates, an MRN that
differs from the header's PatientID, the institution) and clinical marks (laterality and
position markers) plus a harmless label into chest radiographs (CR/DX, MONOCHROME1 and 2,
12-16 bit), a CT slice and an RGB ultrasound with a top banner.  Every drawn string comes
back with its tight box and whether it identifies, so a test is a lookup, not a guess.

Fonts come from Debian's ``fonts-dejavu``, ``fonts-wqy-zenhei`` and ``fonts-noto-cjk``;
when none can be found :class:`FontsMissing` says which packages to install.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    UltrasoundImageStorage,
    generate_uid,
)

from safepacs.synth import names, pixels

#: Kinds of planted text that identify someone; everything else must survive.
IDENTITY_KINDS = frozenset(
    {"latin_name", "chinese_name", "resident_id", "date", "mrn", "institution", "phone"}
)
#: Kinds that are clinical marks or harmless labels.
KEEP_KINDS = frozenset({"marker", "label"})

_LATIN_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf",
    "/usr/share/fonts/opentype/urw-base35/NimbusSans-Regular.otf",
    "/usr/share/fonts/truetype/noto/NotoSansMono-Regular.ttf",
)
_CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
)
_MARKERS_LATIN = ("L", "R", "PA", "AP", "LAT", "SUPINE", "ERECT")
_MARKERS_CJK = ("左", "右", "卧位", "立位")
HARMLESS_LABEL = "red green blue"
#: Least difference between text and what lies beneath it (fraction of full scale):
#: fainter text is not legible to a reader either.
MIN_CONTRAST = 0.12


class FontsMissing(RuntimeError):
    """No usable font for burned-in text: install fonts-dejavu and fonts-wqy-zenhei."""


@dataclass(frozen=True)
class TextBox:
    """Tight box of drawn ink in full-resolution pixels (x, y = column, row of top-left)."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class BurnedText:
    """One planted string: what it says, where it is, and whether it identifies."""

    text: str
    kind: str
    box: TextBox

    @property
    def identity(self) -> bool:
        return self.kind in IDENTITY_KINDS


@dataclass
class BurnedImage:
    """A dataset with burned-in text, its 8-bit display frame and the answer key."""

    dataset: FileDataset
    frame: np.ndarray  # 2-D uint8, 0 = black, as a viewer shows it
    planted: list[BurnedText] = field(default_factory=list)

    @property
    def identity(self) -> list[BurnedText]:
        return [p for p in self.planted if p.identity]

    @property
    def kept(self) -> list[BurnedText]:
        return [p for p in self.planted if not p.identity]


# --------------------------------------------------------------------------- fonts
def _existing(paths: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p for p in paths if Path(p).is_file())


def fonts_available() -> str | None:
    """None when Latin and CJK fonts exist, else a message naming what to install."""
    if not _existing(_LATIN_FONTS):
        return "no Latin font found: install the Debian package fonts-dejavu"
    if not _existing(_CJK_FONTS):
        return "no CJK font found: install the Debian package fonts-wqy-zenhei or fonts-noto-cjk"
    return None


@lru_cache(maxsize=64)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def _pick_font(rng: random.Random, text: str, size: int) -> ImageFont.FreeTypeFont:
    missing = fonts_available()
    if missing:
        raise FontsMissing(missing)
    cjk = any(ord(c) >= 0x2E80 for c in text)
    return _font(rng.choice(_existing(_CJK_FONTS if cjk else _LATIN_FONTS + _CJK_FONTS[:1])), size)


# --------------------------------------------------------------------------- people
@dataclass(frozen=True)
class _Identity:
    latin: names.Person
    chinese: names.Person
    birth: date
    study: date
    resident_id: str
    mrn: str  # burned into the pixels, never equal to the header's PatientID
    patient_id: str
    institution: str
    phone: str


_INSTITUTIONS = (
    "Maple Ridge Medical Center",
    "St. Aldhelm Hospital",
    "Harborview Clinic",
    "青禾市第三人民医院",
    "云溪市中心医院",
    "南湖大学附属第一医院",
)


def _identity(rng: random.Random) -> _Identity:
    latin = names.person(rng, rng.choice(("ascii", "latin")))
    chinese = names.person(rng, "zh")
    birth = names.birth_date(rng)
    study = date(2012, 1, 1) + timedelta(days=rng.randrange(0, 12 * 365))
    return _Identity(
        latin=latin,
        chinese=chinese,
        birth=birth,
        study=study,
        resident_id=names.resident_id(rng, birth, chinese.sex, want_x=rng.random() < 0.2),
        mrn=names.random_id(rng, rng.choice(("", "MR", "RP", "H")), rng.randrange(7, 10)),
        patient_id=names.random_id(rng, "PID", 8),
        institution=rng.choice(_INSTITUTIONS),
        phone=f"{rng.choice(('138', '139', '186'))}{rng.randrange(10**7, 10**8)}",
    )


def _date_text(rng: random.Random, d: date) -> str:
    forms = (
        f"{d:%Y-%m-%d}",
        f"{d:%m.%d.%Y}",
        f"{d:%d.%m.%Y}",
        f"{d:%Y%m%d}",
        f"{d:%d/%m/%Y}",
        f"{d.year}年{d.month}月{d.day}日",
    )
    return rng.choice(forms)


def _identity_lines(rng: random.Random, who: _Identity) -> list[tuple[str, str]]:
    """Candidate (text, kind) lines of identity, as devices and scanners print them."""
    fam, _, giv = who.latin.pn.partition("^")
    giv = giv.split("^")[0]
    latin = rng.choice(
        (f"{fam.upper()} {giv.upper()}", f"{fam}, {giv}", f"Name: {giv} {fam}", f"{fam}^{giv}")
    )
    chinese = rng.choice((who.chinese.display, f"姓名: {who.chinese.display}",
                          f"患者 {who.chinese.display}"))
    rid = rng.choice((who.resident_id, f"身份证 {who.resident_id}"))
    dob = _date_text(rng, who.birth)
    dates = rng.choice((_date_text(rng, who.study), f"DOB: {dob}", f"出生日期 {dob}"))
    mrn = rng.choice((f"MRN: {who.mrn}", f"ID {who.mrn}", f"住院号 {who.mrn}", who.mrn))
    return [
        (latin, "latin_name"),
        (chinese, "chinese_name"),
        (rid, "resident_id"),
        (dates, "date"),
        (mrn, "mrn"),
        (who.institution, "institution"),
    ]


# --------------------------------------------------------------------------- drawing
def _cells(rows: int, cols: int, grid: int = 4) -> list[tuple[int, int, int, int]]:
    """Border cells of a grid x grid layout (x0, y0, x1, y1): where text sits on an image."""
    out = []
    last = grid - 1
    for gy in range(grid):
        for gx in range(grid):
            if gy in (0, last) or gx in (0, last):
                out.append((gx * cols // grid, gy * rows // grid, (gx + 1) * cols // grid,
                            (gy + 1) * rows // grid))
    return out


def _draw(
    canvas: np.ndarray,
    rng: random.Random,
    text: str,
    cell: tuple[int, int, int, int],
    font: ImageFont.FreeTypeFont,
) -> TextBox | None:
    """Draw ``text`` in ``cell`` of a [0, 1] float display canvas; its ink box, or None."""
    size = int(font.size)
    left, top, right, bottom = font.getbbox(text)
    tw, th = right - left, bottom - top
    x0, y0, x1, y1 = cell
    if tw + 10 > x1 - x0 or th + 10 > y1 - y0:
        return None
    margin = size // 2 + 4  # text in neighbouring cells never runs together
    if tw + 2 * margin > x1 - x0:
        margin = 4
    x = rng.randrange(x0 + margin, x1 - tw - margin + 1) - left
    y = rng.randrange(y0 + 4, y1 - th - 4) - top
    mask = Image.new("L", (x1 - x0 + 2 * size, y1 - y0 + 2 * size), 0)
    ImageDraw.Draw(mask).text((x - x0 + size, y - y0 + size), text, font=font, fill=255)
    ink = np.asarray(mask, dtype=np.float32)[size : size + y1 - y0, size : size + x1 - x0] / 255
    ys, xs = np.nonzero(ink > 0.3)
    if len(xs) == 0:
        return None
    box = TextBox(int(xs.min()) + x0, int(ys.min()) + y0, int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)
    region = canvas[y0:y1, x0:x1]
    style = rng.random()
    if style < 0.2:  # dark text on a light label, as scanned stickers show
        pad = max(4, size // 4)
        bx, by = box.x - x0, box.y - y0
        region[max(0, by - pad) : by + box.h + pad, max(0, bx - pad) : bx + box.w + pad] = (
            rng.uniform(0.75, 0.95)
        )
        level = rng.uniform(0.0, 0.25)
    elif style < 0.35:  # text on a black plate, as device overlays draw it
        pad = max(4, size // 4)
        bx, by = box.x - x0, box.y - y0
        region[max(0, by - pad) : by + box.h + pad, max(0, bx - pad) : bx + box.w + pad] = 0.0
        level = rng.uniform(0.6, 1.0)
    else:  # bright or dark text, any contrast that a reader can still see everywhere
        under = region[box.y - y0 : box.y - y0 + box.h, box.x - x0 : box.x - x0 + box.w]
        lo, hi = float(np.percentile(under, 2)), float(np.percentile(under, 98))
        level = rng.uniform(0.55, 1.0)
        if lo - MIN_CONTRAST < level < hi + MIN_CONTRAST:
            if hi + MIN_CONTRAST <= 1.0:
                level = rng.uniform(hi + MIN_CONTRAST, 1.0)
            elif lo - MIN_CONTRAST >= 0.0:
                level = rng.uniform(0.0, lo - MIN_CONTRAST)
            else:  # background spans the whole range: a plate behind the text
                region[box.y - y0 : box.y - y0 + box.h, box.x - x0 : box.x - x0 + box.w] = 0.0
                level = 0.8
    region[:] = region * (1 - ink) + level * ink
    return box


def _place(
    canvas: np.ndarray,
    rng: random.Random,
    lines: list[tuple[str, str]],
    sizes: tuple[int, int],
    grid: int = 4,
) -> list[BurnedText]:
    rows, cols = canvas.shape
    cells = _cells(rows, cols, grid)
    rng.shuffle(cells)
    out = []
    for text, kind in lines:
        font = _pick_font(rng, text, rng.randrange(*sizes))
        for _ in range(4):  # a long line that fits no free cell is drawn smaller
            fit = next((c for c in cells if _fits(font, text, c)), None)
            if fit is not None:
                break
            font = _font(font.path, max(10, int(font.size * 0.8)))
        if fit is None:
            continue
        box = _draw(canvas, rng, text, fit, font)
        cells.remove(fit)
        if box is not None:
            out.append(BurnedText(text, kind, box))
    return out


def _fits(font: ImageFont.FreeTypeFont, text: str, cell: tuple[int, int, int, int]) -> bool:
    left, top, right, bottom = font.getbbox(text)
    return right - left + 10 <= cell[2] - cell[0] and bottom - top + 10 <= cell[3] - cell[1]


# --------------------------------------------------------------------------- datasets
def _dataset(sop_class: str, modality: str, who: _Identity, rows: int, cols: int) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = f"{who.latin.pn}" if modality != "US" else who.chinese.pn
    ds.OtherPatientNames = who.chinese.pn if modality != "US" else who.latin.pn
    ds.PatientID = who.patient_id
    ds.PatientBirthDate = f"{who.birth:%Y%m%d}"
    ds.PatientSex = who.latin.sex
    ds.StudyDate = f"{who.study:%Y%m%d}"
    ds.ContentDate = ds.StudyDate
    ds.StudyTime = "093012"
    ds.AccessionNumber = names.random_id(random.Random(who.mrn), "ACC", 8)
    ds.InstitutionName = who.institution
    ds.OtherPatientIDsSequence = Sequence()
    ds.BurnedInAnnotation = "YES"
    ds.Rows, ds.Columns = rows, cols
    return ds


def _grey_module(ds: FileDataset, stored: np.ndarray, bits: int, mono1: bool) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    top = (1 << bits) - 1
    ds.WindowCenter = str(top / 2)
    ds.WindowWidth = str(top + 1)
    ds.PixelData = stored.astype("<u2").tobytes()


def _to_stored(display: np.ndarray, bits: int, mono1: bool) -> tuple[np.ndarray, np.ndarray]:
    """(stored uint16, 8-bit display frame) for a [0, 1] display canvas."""
    top = (1 << bits) - 1
    disp = np.clip(display, 0.0, 1.0)
    stored = np.rint((1.0 - disp if mono1 else disp) * top).astype(np.uint16)
    shown = stored.astype(np.float32) / top
    frame = np.rint((1.0 - shown if mono1 else shown) * 255).astype(np.uint8)
    return stored, frame


def chest_xray(
    seed: int,
    *,
    rows: int = 2048,
    cols: int = 2048,
    places: int | None = None,
    markers: int | None = None,
    harmless: bool | None = None,
    kinds: tuple[str, ...] | None = None,
) -> BurnedImage:
    """A CR or DX chest radiograph with 1-4 identity lines, markers and maybe a label.

    ``kinds`` forces which identity lines are drawn (e.g. ``("mrn",)``); otherwise 1-4 of
    the six kinds are chosen at random, as are photometric interpretation (MONOCHROME1 or
    2), bit depth (12-16), fonts, sizes, contrasts and positions.
    """
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    who = _identity(rng)
    bits = rng.choice((12, 14, 15, 16))
    mono1 = rng.random() < 0.5
    base = pixels.radiograph(nrng, rows, cols, 12, False).astype(np.float32) / 4095.0
    lines = _identity_lines(rng, who)
    if kinds is not None:
        lines = [ln for ln in lines if ln[1] in kinds]
    else:
        rng.shuffle(lines)
        lines = lines[: places or rng.randint(1, 4)]
    n_mark = markers if markers is not None else rng.randint(1, 2)
    pool = list(_MARKERS_LATIN + _MARKERS_CJK)
    rng.shuffle(pool)
    extra = [(m, "marker") for m in pool[:n_mark]]
    if harmless if harmless is not None else rng.random() < 0.4:
        extra.append((HARMLESS_LABEL, "label"))
    scale = max(rows, cols) / 2048
    planted = _place(base, rng, lines + extra, (int(22 * scale), int(60 * scale)))
    stored, frame = _to_stored(base, bits, mono1)
    modality = rng.choice(("CR", "DX"))
    sop = ComputedRadiographyImageStorage if modality == "CR" else DigitalXRayImageStorageForPresentation
    ds = _dataset(sop, modality, who, rows, cols)
    ds.Manufacturer = rng.choice(("Agfa", "SIEMENS", "GE Healthcare"))
    _grey_module(ds, stored, bits, mono1)
    return BurnedImage(ds, frame, planted)


def ct_slice(seed: int, *, size: int = 512) -> BurnedImage:
    """An axial CT slice (window 40/400) with a name, a date and the institution in corners."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    who = _identity(rng)
    hu = pixels.ct_slice(nrng, size, 0.3, signed=True).astype(np.float32)
    display = np.clip((hu - (40 - 200)) / 400.0, 0.0, 1.0)
    lines = [ln for ln in _identity_lines(rng, who) if ln[1] in ("latin_name", "date", "institution")]
    planted = _place(display, rng, lines + [("R", "marker")], (14, 20), grid=2)
    stored = np.rint(display * 400 + (40 - 200) + 1024).clip(0, 4095).astype(np.uint16)
    frame = np.rint(np.clip((stored.astype(np.float32) - 1024 - (40 - 200)) / 400, 0, 1) * 255)
    ds = _dataset(CTImageStorage, "CT", who, size, size)
    ds.Manufacturer = "SIEMENS"
    _grey_module(ds, stored, 12, False)
    ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    return BurnedImage(ds, frame.astype(np.uint8), planted)


def ultrasound(seed: int, *, rows: int = 600, cols: int = 800) -> BurnedImage:
    """An 8-bit RGB ultrasound whose top banner holds the name, date and institution.

    SequenceOfUltrasoundRegions describes the sector as the one data region; the banner
    lies above it.
    """
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    who = _identity(rng)
    banner = rows // 10
    rgb = np.zeros((rows, cols, 3), dtype=np.uint8)
    rgb[banner:] = pixels.ultrasound_rgb(nrng, rows - banner, cols)
    grey = np.zeros((rows, cols), dtype=np.float32)
    texts = [(who.chinese.display, "chinese_name"), (_date_text(rng, who.study), "date"),
             (who.institution, "institution")]
    planted: list[BurnedText] = []
    x = 8
    for text, kind in texts:
        font = _pick_font(rng, text, rng.randrange(16, 24))
        box = _draw(grey, rng, text, (x, 0, min(cols, x + cols // 3), banner), font)
        if box is not None:
            planted.append(BurnedText(text, kind, box))
        x += cols // 3
    ink = (grey > 0.05)[:, :, None]
    text_rgb = (grey[:, :, None] * 255).astype(np.uint8)
    rgb = np.where(ink, text_rgb, rgb)
    ds = _dataset(UltrasoundImageStorage, "US", who, rows, cols)
    ds.Manufacturer = "GE Healthcare"
    ds.ManufacturerModelName = "LOGIQ E10"
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = rgb.tobytes()
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0 = 0
    region.RegionLocationMinY0 = banner
    region.RegionLocationMaxX1 = cols - 1
    region.RegionLocationMaxY1 = rows - 1
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    frame = np.rint(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    return BurnedImage(ds, frame.clip(0, 255).astype(np.uint8), planted)


def burned_set(seed: int, count: int, *, min_side: int = 2048) -> Iterator[BurnedImage]:
    """``count`` varied chest radiographs: sizes from ``min_side`` up, seeds from ``seed``."""
    rng = random.Random(seed)
    sides = (min_side, min_side, min_side + 256, min_side + 512)
    for i in range(count):
        rows, cols = rng.choice(sides), rng.choice(sides)
        yield chest_xray(seed * 1000 + i, rows=rows, cols=cols)
