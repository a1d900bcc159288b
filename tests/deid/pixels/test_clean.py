"""Clean Pixel Data on one dataset, with the real detector and real OCR (Tesseract).

Legibility is judged twice: by Tesseract reads of the area around each planted string
(plain, inverted and binarised, English and Chinese), and by the detector's
``legible_identity`` over the whole frame; the same reads on the original prove that the
check can see the text at all.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import RLELossless

from safepacs.deid.delta import IdentityDelta
from safepacs.deid.pixels.clean import clean_pixels, restore_pixels
from safepacs.deid.pixels.findings import Box, Finding, FrameReport, legible_identity
from safepacs.deid.pixels.frames import display_frame, stored_frames
from safepacs.synth.burned import chest_xray, ct_slice, fonts_available, ultrasound
from tests.conftest import TCIA, needs_tcia

tesserocr = pytest.importorskip("tesserocr")
pytestmark = pytest.mark.skipif(fonts_available() is not None, reason="fonts for burned text missing")


@lru_cache(maxsize=2)
def _api(lang: str):
    from safepacs.deid.pixels.ocr import tessdata_dir

    return tesserocr.PyTessBaseAPI(path=tessdata_dir(), lang=lang)


def read(frame: np.ndarray, psm: int = 6) -> str:
    """Tesseract (English, then Chinese) on a grey frame, both polarities."""
    import cv2
    from PIL import Image

    frame = np.ascontiguousarray(frame)
    _, otsu = cv2.threshold(frame, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    out = []
    for lang in ("eng", "chi_sim"):
        api = _api(lang)
        api.SetPageSegMode(psm)
        for img in (frame, 255 - frame, otsu, 255 - otsu):
            api.SetImage(Image.fromarray(img))
            out.append(api.GetUTF8Text())
    # Tesseract spaces Chinese characters apart; join them back into words
    return re.sub(r"(?<=[\u3400-\u9fff])[ \t]+(?=[\u3400-\u9fff])", "", "\n".join(out))


def norm(text: str) -> str:
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text)).upper()


def around(frame: np.ndarray, box, grow: float = 1.0) -> np.ndarray:
    m = int(box.h * grow) + 4
    return frame[max(0, box.y - m) : box.y + box.h + m, max(0, box.x - m) : box.x + box.w + m]


def legible(frame: np.ndarray, planted) -> bool:
    """Any run of the planted string (4+ Latin characters or digits, 2+ CJK) is read
    around its box: part of an ID number is a leak too."""
    want = norm(planted.text)
    for token in read(around(frame, planted.box)).split():
        t = norm(token)
        cjk = any("\u3400" <= c <= "\u9fff" for c in t)
        if len(t) >= (2 if cjk else 4) and t in want:
            return True
    return False


def clean_copy(ds, **kw):
    out = pydicom.Dataset(ds)
    out.file_meta = ds.file_meta
    out.PixelData = bytes(ds.PixelData)
    delta = IdentityDelta()
    return out, clean_pixels(out, ds, delta=delta, **kw), delta


def finds(box):
    """A detector that reports ``box`` (to be removed) in every frame it is shown: the
    mechanics of cleaning, apart from what the real detector finds."""

    def find(frame, header, *, remove_all_text=False):
        return FrameReport([Finding(box, True, "given")], 0.0, 0.0)

    return find


SAMPLES = [lambda: chest_xray(101), lambda: chest_xray(102, rows=2048, cols=2304),
           lambda: chest_xray(103, kinds=("mrn", "chinese_name")), lambda: ct_slice(104),
           lambda: ultrasound(105)]


@pytest.mark.parametrize("make", SAMPLES, ids=["cr", "cr-wide", "mrn-chinese", "ct", "us"])
def test_planted_identity_is_illegible_and_clinical_marks_stay(make):
    burned = make()
    ds = burned.dataset
    before = display_frame(stored_frames(ds), 0, ds)
    out, result, _ = clean_copy(ds)
    after = display_frame(stored_frames(out), 0, out)
    seen_before = [p for p in burned.identity if legible(before, p)]
    rules_before = legible_identity(before, ds)
    assert seen_before or rules_before, "control: OCR reads no planted text in the original"
    still = [p.kind for p in burned.identity if legible(after, p)]
    assert still == []
    assert legible_identity(after, ds) == []
    for kept in burned.kept:  # laterality / position markers and harmless labels
        b = kept.box
        assert np.array_equal(after[b.y : b.y + b.h, b.x : b.x + b.w],
                              before[b.y : b.y + b.h, b.x : b.x + b.w]), kept.kind
    assert result.boxes_removed >= 1 and result.changed


def test_report_names_rules_and_times_never_text():
    burned = chest_xray(106, kinds=("latin_name", "date", "resident_id"))
    _, result, _ = clean_copy(burned.dataset)
    report = result.report()
    assert set(report) >= {"boxes_found", "boxes_removed", "rules", "ocr_seconds"}
    assert report["boxes_found"] >= report["boxes_removed"] == len(report["rules"]) >= 1
    assert report["ocr_seconds"] > 0
    blob = json.dumps(report, ensure_ascii=False)
    for p in burned.planted:
        assert p.text not in blob
        for word in re.split(r"[\s^:]+", p.text):
            if len(word) >= 3:
                assert word not in blob


def test_native_patches_restore_every_byte():
    ds = chest_xray(107).dataset
    original = bytes(ds.PixelData)
    out, result, delta = clean_copy(ds)
    assert out.PixelData != original and len(out.PixelData) == len(original)
    assert delta.pixels is None  # the caller stores the pixel section
    restore_pixels(out, result.pixels)
    assert out.PixelData == original


def test_every_frame_of_a_cine_loop_is_cleaned_and_restored():
    burned = ultrasound(108)
    ds = burned.dataset
    single = np.frombuffer(ds.PixelData, np.uint8).reshape(int(ds.Rows), int(ds.Columns), 3)
    frames = np.stack([single, np.roll(single, 3, axis=0), single // 2])
    ds.NumberOfFrames = 3
    ds.PixelData = frames.tobytes()
    original = bytes(ds.PixelData)
    out, result, _ = clean_copy(ds)
    assert result.frames_examined == 3
    cleaned = np.frombuffer(out.PixelData, np.uint8).reshape(frames.shape)
    for r in result.rects:
        for f in range(3):
            assert not cleaned[f, r.y : r.y + r.h, r.x : r.x + r.w].any()  # black in RGB
    shown = display_frame(stored_frames(out), 2, out)
    assert not [p.text for p in burned.identity if legible(shown, p)]
    restore_pixels(out, result.pixels)
    assert out.PixelData == original


def test_compressed_original_is_kept_byte_for_byte_and_header_changes_recorded():
    burned = chest_xray(109)
    ds = burned.dataset
    ds.compress(RLELossless, encoding_plugin="pylibjpeg")
    out, result, delta = clean_copy(ds)
    assert out.file_meta.TransferSyntaxUID == RLELossless
    assert result.pixels.group is not None and result.pixels.patches == []
    keys = {tag for (_, tag) in delta.entries}
    assert 0x00020010 in keys and 0x00280004 in keys  # TransferSyntaxUID, Photometric...
    assert restore_pixels(out, result.pixels) == result.pixels.group


def test_nothing_to_remove_leaves_the_pixels_alone():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    original = bytes(ds.PixelData)
    out, result, delta = clean_copy(ds)
    assert not result.changed and result.boxes_removed == 0
    assert out.PixelData == original and len(delta) == 0


def test_remove_all_text_removes_the_markers_too():
    burned = chest_xray(110, markers=2, harmless=True)
    ds = burned.dataset
    before = display_frame(stored_frames(ds), 0, ds)
    out, _, _ = clean_copy(ds, remove_all_text=True)
    after = display_frame(stored_frames(out), 0, out)
    changed = [p.kind for p in burned.kept
               if not np.array_equal(after[p.box.y : p.box.y + p.box.h, p.box.x : p.box.x + p.box.w],
                                     before[p.box.y : p.box.y + p.box.h, p.box.x : p.box.x + p.box.w])]
    assert "label" in changed


@needs_tcia
@pytest.mark.parametrize(
    ("name", "words"),
    [("0_ORIGINAL_compressed.dcm", ("DAVIDSON", "DOUGLAS", "01092012", "06161976")),
     ("2_ORIGINAL.dicom", ("KAUFMAN", "SCOTT", "07221943"))],
)
def test_tcia_burned_in_name_and_dates_go_and_the_rest_is_untouched(name, words):
    ds = pydicom.dcmread(TCIA / name)
    before = stored_frames(ds).array.copy()
    band = slice(0, int(ds.Rows) // 8)
    assert any(w in norm(read(display_frame(stored_frames(ds), 0, ds)[band])) for w in words)
    out, result, _ = clean_copy(ds)
    after_stored = stored_frames(out)
    text = norm(read(display_frame(after_stored, 0, out)[band]))
    assert [w for w in words if w in text] == []
    assert [w for w in ("DOB", "1976", "1943") if w in text] == []
    inside = np.zeros(before.shape[1:3], dtype=bool)
    for r in result.rects:
        inside[r.y : r.y + r.h, r.x : r.x + r.w] = True
    assert inside.any() and inside.mean() < 0.2
    assert np.array_equal(after_stored.array[0][~inside], before[0][~inside])


def test_a_failing_text_detector_fails_the_file_closed():
    from safepacs.deid.pixels.findings import fixed_regions
    from safepacs.deid.pixels.frames import PixelError

    ds = ct_slice(111).dataset
    before = bytes(ds.PixelData)

    def broken(frame, header, *, remove_all_text=False):
        raise RuntimeError("tesseract traineddata missing")

    with pytest.raises(PixelError, match="text detection failed"):
        clean_pixels(ds, ds, find=broken, fixed=fixed_regions)
    assert bytes(ds.PixelData) == before


@pytest.mark.parametrize(
    "name",
    ["SC_rgb_dcmtk_+eb+cy+np.dcm", "OBXXXX1A.dcm", "MR_small_jpeg_ls_lossless.dcm", "RG1_J2KR.dcm",
     "SC_rgb_rle_2frame.dcm", "color3d_jpeg_baseline.dcm", "MR_small.dcm", "SC_ybr_full_uncompressed.dcm"],
)
def test_every_format_is_filled_in_place_and_restored(name):
    """The mechanics for every photometric interpretation and transfer syntax, with a box
    given (what the detector says is its own business, tested above)."""

    ds = pydicom.dcmread(get_testdata_file(name))
    rows, cols = int(ds.Rows), int(ds.Columns)
    box = Box(cols // 4, rows // 4, cols // 3, max(4, rows // 10))

    find = finds(box)
    before = stored_frames(ds).array.copy()
    original = bytes(ds.PixelData)
    out, result, delta = clean_copy(ds, find=find, fixed=lambda h, r, c: [])
    after = stored_frames(out)
    (r,) = result.rects
    inside = np.zeros((rows, cols), dtype=bool)
    inside[r.y : r.y + r.h, r.x : r.x + r.w] = True
    for f in range(after.array.shape[0]):
        shown = display_frame(after, f, out)
        assert shown[inside].max() == shown.min()  # filled with the darkest value
        assert np.array_equal(after.array[f][~inside], before[f][~inside])
    assert ds.file_meta.TransferSyntaxUID.is_compressed == (out.file_meta.TransferSyntaxUID == RLELossless)
    if ds.file_meta.TransferSyntaxUID in (
        "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"
    ):
        assert out.LossyImageCompression == "01"
    restored = restore_pixels(out, result.pixels)
    if restored is None:
        assert out.PixelData == original
    else:
        assert restored == result.pixels.group


def test_keep_original_false_neither_encodes_nor_keeps_the_compressed_original(monkeypatch):
    """A caller that keeps no identity delta asks for no original: the pixel group is not
    encoded again just to be thrown away, and the result still says the pixels changed."""
    from safepacs.deid.pixels import clean

    def never(ds):
        raise AssertionError("the original pixel group was encoded")

    monkeypatch.setattr(clean, "_encode_group", never)
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))

    find = finds(Box(2, 2, 20, 8))
    out, result, _ = clean_copy(ds, find=find, fixed=lambda h, r, c: [], keep_original=False)
    assert result.changed and result.pixels.group is None and result.pixels.patches == []
    assert out.file_meta.TransferSyntaxUID == RLELossless
    assert not stored_frames(out).array[:, 2:10, 2:22].any()


def test_a_compressed_cine_is_cleaned_a_frame_at_a_time(monkeypatch):
    """A 120-frame JPEG colour loop (110 MB decoded) is decoded, redacted and re-encoded
    frame by frame: beside the new frames (held twice while they are joined into one
    value), cleaning holds far less than the decoded loop, and every frame is filled."""
    import tracemalloc

    from safepacs.deid.pixels import clean

    def whole(ds):
        raise AssertionError("the whole loop was decoded")

    monkeypatch.setattr(clean, "stored_frames", whole)
    ds = pydicom.dcmread(get_testdata_file("color3d_jpeg_baseline.dcm"))
    frames, decoded = int(ds.NumberOfFrames), ds.pixel_array.nbytes
    box = Box(40, 30, 200, 40)

    find = finds(box)
    tracemalloc.start()
    try:
        result = clean_pixels(ds, ds, find=find, fixed=lambda h, r, c: [], keep_original=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.changed and ds.file_meta.TransferSyntaxUID == RLELossless
    assert peak - 2 * len(ds.PixelData) < decoded / 4
    (r,) = result.rects
    cleaned = ds.pixel_array
    assert cleaned.shape[0] == frames
    assert not cleaned[:, r.y : r.y + r.h, r.x : r.x + r.w].any()  # black in every frame


def test_a_cine_whose_frames_cannot_be_found_alone_is_decoded_whole(monkeypatch):
    """Where a frame cannot be decoded by its number alone, the loop is decoded whole as
    before, and cleaned all the same."""
    from safepacs.deid.pixels import clean

    def alone(ds, lay, index):
        raise clean.PixelError("frame not found alone")

    monkeypatch.setattr(clean, "decoded_frame", alone)
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))

    find = finds(Box(2, 2, 20, 8))
    out, result, _ = clean_copy(ds, find=find, fixed=lambda h, r, c: [])
    (r,) = result.rects
    assert result.frames_examined == 2
    assert not out.pixel_array[:, r.y : r.y + r.h, r.x : r.x + r.w].any()
    assert restore_pixels(out, result.pixels) == result.pixels.group
