"""Synthetic burned-in text: deterministic, drawn where the answer key says, headers
consistent with the pixels."""

from __future__ import annotations

import numpy as np
import pytest

from safepacs.synth import burned, names

pytestmark = pytest.mark.skipif(burned.fonts_available() is not None,
                                reason=burned.fonts_available() or "")


def shown(ds) -> np.ndarray:
    """The 8-bit frame a viewer shows for a grey dataset: its window, MONOCHROME1 inverted."""
    pixels = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(
        ds.get("RescaleIntercept", 0)
    )
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    frame = np.clip((pixels - (center - width / 2)) / width, 0, 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        frame = 1 - frame
    return frame * 255


def test_same_seed_same_image_and_key():
    a, b = burned.chest_xray(5), burned.chest_xray(5)
    assert np.array_equal(a.frame, b.frame) and a.planted == b.planted
    assert a.dataset.PixelData == b.dataset.PixelData
    assert not np.array_equal(a.frame, burned.chest_xray(6).frame)


@pytest.mark.parametrize("seed", range(8))
def test_chest_xray_header_and_pixels_agree(seed):
    image = burned.chest_xray(seed)
    ds = image.dataset
    assert ds.Modality in ("CR", "DX") and 12 <= ds.BitsStored <= 16
    assert ds.pixel_array.shape == image.frame.shape == (ds.Rows, ds.Columns)
    assert ds.pixel_array.max() < (1 << ds.BitsStored)
    assert np.abs(shown(ds) - image.frame).max() <= 1.0


@pytest.mark.parametrize("seed", range(8))
def test_planted_text_is_drawn_inside_its_box_and_only_there(seed):
    image = burned.chest_xray(seed, harmless=True)
    rows, cols = image.frame.shape
    assert 1 <= len(image.identity) <= 4
    assert any(p.kind == "marker" for p in image.planted)
    for p in image.planted:
        b = p.box
        assert 0 <= b.x and 0 <= b.y and b.x + b.w <= cols and b.y + b.h <= rows
        inside = image.frame[b.y : b.y + b.h, b.x : b.x + b.w].astype(np.int16)
        assert inside.max() - inside.min() >= 25, p.kind  # legible contrast
    boxes = [p.box for p in image.planted]
    for i, a in enumerate(boxes):  # lines never overlap each other
        for b in boxes[i + 1 :]:
            assert a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y


def test_the_burned_mrn_never_equals_the_header_patient_id():
    for seed in range(10):
        image = burned.chest_xray(seed, kinds=("mrn",))
        (mrn,) = image.identity
        assert image.dataset.PatientID not in mrn.text


def test_resident_ids_are_valid_and_names_come_from_the_header():
    for seed in range(10):
        image = burned.chest_xray(seed, kinds=("resident_id", "latin_name", "chinese_name"))
        by_kind = {p.kind: p.text for p in image.identity}
        assert names.is_valid_resident_id(by_kind["resident_id"].split()[-1])
        header = f"{image.dataset.PatientName}={image.dataset.OtherPatientNames}"
        family = str(image.dataset.PatientName).split("^")[0]
        assert family.casefold() in by_kind["latin_name"].casefold()
        chinese = by_kind["chinese_name"].split()[-1]
        assert chinese[:1] in header


def test_the_set_covers_both_photometric_interpretations_and_large_matrices():
    images = list(burned.burned_set(3, 12))
    assert {i.dataset.PhotometricInterpretation for i in images} == {"MONOCHROME1", "MONOCHROME2"}
    assert all(min(i.frame.shape) >= 2048 for i in images)
    assert len({i.frame.shape for i in images}) > 1


def test_ultrasound_banner_holds_the_text_above_the_data_region():
    image = burned.ultrasound(2)
    ds = image.dataset
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    assert ds.pixel_array.shape == (ds.Rows, ds.Columns, 3)
    top = ds.SequenceOfUltrasoundRegions[0].RegionLocationMinY0
    assert image.identity and all(p.box.y + p.box.h <= top for p in image.planted)


def test_ct_slice_has_corner_text_and_a_marker():
    image = burned.ct_slice(3)
    assert {p.kind for p in image.planted} >= {"latin_name", "institution", "marker"}
    assert np.abs(shown(image.dataset) - image.frame).max() <= 1.0


def test_missing_fonts_fail_with_a_message_naming_the_package(monkeypatch):
    monkeypatch.setattr(burned, "_LATIN_FONTS", ("/nonexistent/font.ttf",))
    assert "fonts-dejavu" in (burned.fonts_available() or "")
    with pytest.raises(burned.FontsMissing, match="fonts-dejavu"):
        burned.chest_xray(1)
