"""The batch runner with Clean Pixel Data: which files are cleaned, what is written, what
restore gives back, and what happens to files whose pixels cannot be cleaned."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import MPEG2MPML, RLELossless

from safepacs.deid.batch import Job, discover, run
from safepacs.deid.engine import deidentify
from safepacs.deid.options import Options
from safepacs.deid.pixels.findings import legible_identity
from safepacs.deid.pixels.frames import display_frame, stored_frames
from safepacs.deid.restore import restore_tree
from safepacs.errors import RejectedFile
from safepacs.synth.burned import chest_xray, fonts_available, ultrasound

pytestmark = pytest.mark.skipif(fonts_available() is not None, reason="fonts for burned text missing")


def _deid(src: Path, tmp: Path, keys, **options):
    job = Job(tmp / "out", None, Options(**options), keys.secret, tmp / "deltas", time.time() - 1)
    return {r.input: r for r in run(list(discover(src)), job)}


def _save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _restored_bytes_equal(tmp: Path, keys, originals: dict[str, Path]) -> dict[str, bool]:
    results = restore_tree(tmp / "out", tmp / "deltas", tmp / "restored", keys)
    assert all(r.status == "ok" for r in results), [r.reason for r in results]
    by_uid = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): name
              for name, p in originals.items()}
    same = {}
    for path in (tmp / "restored").rglob("*.dcm"):
        name = by_uid[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)]
        same[name] = path.read_bytes()[128:] == originals[name].read_bytes()[128:]
    return same


def test_files_at_risk_are_cleaned_marked_and_restored_byte_for_byte(tmp_path, keys):
    src = tmp_path / "in"
    us_burned, cr_burned = ultrasound(201), chest_xray(202)
    us = us_burned.dataset  # US without BurnedInAnnotation: at risk
    cr = cr_burned.dataset
    cr.BurnedInAnnotation = "YES"
    rle = chest_xray(203).dataset
    rle.BurnedInAnnotation = "YES"
    rle.compress(RLELossless, encoding_plugin="pylibjpeg")
    originals = {"us.dcm": _save(us, src / "us.dcm"), "cr.dcm": _save(cr, src / "cr.dcm"),
                 "rle.dcm": _save(rle, src / "rle.dcm")}
    results = _deid(src, tmp_path, keys)
    for name in originals:
        r = results[name]
        assert r.status == "ok", r.reason
        assert r.pixels["boxes_removed"] >= 1 and r.pixels["rules"]
        out = pydicom.dcmread(tmp_path / "out" / r.output)
        codes = [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
        assert codes[:2] == ["113100", "113101"]
        assert "CLEAN PIXEL DATA OPTION" in out.DeidentificationMethod
        assert out.BurnedInAnnotation == "NO"
        assert str(out.SOPInstanceUID).startswith("2.25.")
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert pydicom.dcmread(tmp_path / "out" / results["rle.dcm"].output).file_meta.TransferSyntaxUID == RLELossless
    for name, burned in (("us.dcm", us_burned), ("cr.dcm", cr_burned)):
        out = pydicom.dcmread(tmp_path / "out" / results[name].output)
        shown = display_frame(stored_frames(out), 0, out)
        before = display_frame(stored_frames(burned.dataset), 0, burned.dataset)
        assert legible_identity(before, burned.dataset)  # control: there was something to find
        assert legible_identity(shown, burned.dataset) == []
        for mark in burned.kept:  # laterality / position markers are exactly as they were
            b = mark.box
            assert np.array_equal(shown[b.y : b.y + b.h, b.x : b.x + b.w],
                                  before[b.y : b.y + b.h, b.x : b.x + b.w])
    assert _restored_bytes_equal(tmp_path, keys, originals) == dict.fromkeys(originals, True)


@pytest.mark.parametrize("bare", [False, True], ids=["part10", "bare-dataset"])
def test_a_cleaned_file_gets_its_pixel_group_length_back_on_restore(tmp_path, keys, bare):
    """An uncompressed original with (7FE0,0000), with file meta or as a bare implicit VR
    dataset (pydicom's OT-PAL-8-face): cleaning rewrites the pixel data without it, restore
    gives it back with the pixels."""
    cr = chest_xray(205).dataset
    cr.BurnedInAnnotation = "YES"
    path = tmp_path / "in" / "cr.dcm"
    if bare:
        path.parent.mkdir(parents=True)
        cr.preamble, cr.file_meta = None, pydicom.dataset.FileMetaDataset()
        pydicom.dcmwrite(path, cr, implicit_vr=True, little_endian=True)
    else:
        _save(cr, path)
    data = path.read_bytes()
    at = data.rindex(b"\xe0\x7f\x10\x00")  # the Pixel Data element, last in the file
    vr = b"" if bare else b"UL\x04\x00"
    length = b"\xe0\x7f\x00\x00" + (vr or struct.pack("<L", 4)) + struct.pack("<L", len(data) - at)
    path.write_bytes(data[:at] + length + data[at:])
    assert pydicom.dcmread(path, force=True)[0x7FE00000].value == len(data) - at
    result = _deid(tmp_path / "in", tmp_path, keys)["cr.dcm"]
    assert result.status == "ok" and result.pixels["boxes_removed"] >= 1, result.reason
    [back] = restore_tree(tmp_path / "out", tmp_path / "deltas", tmp_path / "restored", keys)
    assert back.status == "ok", back.reason
    restored = pydicom.dcmread(back.output, force=True)
    assert restored[0x7FE00000].value == len(data) - at
    assert restored.PixelData == pydicom.dcmread(path, force=True).PixelData


def test_images_flagged_no_keep_the_header_only_path(tmp_path, keys):
    src = tmp_path / "in"
    cr = chest_xray(204).dataset
    cr.BurnedInAnnotation = "NO"  # the header vouches for its pixels: trusted in "auto"
    path = _save(cr, src / "cr.dcm")
    result = _deid(src, tmp_path, keys)["cr.dcm"]
    assert result.status == "ok" and result.pixels is None
    out = pydicom.dcmread(tmp_path / "out" / result.output)
    assert out.PixelData == pydicom.dcmread(path).PixelData
    assert "113101" not in [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
    always = _deid(src, tmp_path / "always", keys, clean_pixels="always")["cr.dcm"]
    assert always.status == "ok" and always.pixels["boxes_removed"] >= 1


def test_images_without_the_flag_are_cleaned_by_default(tmp_path, keys):
    """A radiograph that does not say whether text is burned in is checked: fail closed."""
    src = tmp_path / "in"
    cr = chest_xray(205).dataset
    del cr.BurnedInAnnotation
    _save(cr, src / "cr.dcm")
    result = _deid(src, tmp_path, keys)["cr.dcm"]
    assert result.status == "ok" and result.pixels["boxes_removed"] >= 1
    out = pydicom.dcmread(tmp_path / "out" / result.output)
    assert out.BurnedInAnnotation == "NO"


def test_never_keeps_the_old_refusal_and_its_escape(tmp_path, keys):
    src = tmp_path / "in"
    _save(ultrasound(205).dataset, src / "us.dcm")
    refused = _deid(src, tmp_path / "a", keys, clean_pixels="never")["us.dcm"]
    assert refused.status == "rejected" and "burned-in" in refused.reason
    accepted = _deid(src, tmp_path / "b", keys, clean_pixels="never", accept_burned_in_risk=True)
    assert accepted["us.dcm"].status == "ok" and accepted["us.dcm"].pixels is None


def test_pure_engine_still_refuses_unless_the_caller_cleans(keys):
    ds = ultrasound(206).dataset
    with pytest.raises(RejectedFile, match="burned-in"):
        deidentify(ds, Options(), keys)


def test_corrupt_or_undecodable_pixels_reject_only_that_file(tmp_path, keys):
    src = tmp_path / "in"
    good = chest_xray(207).dataset
    good.BurnedInAnnotation = "YES"
    _save(good, src / "good.dcm")
    broken = chest_xray(208).dataset
    broken.BurnedInAnnotation = "YES"
    broken.compress(RLELossless, encoding_plugin="pylibjpeg")
    frags = bytearray(broken.PixelData)
    frags[200:240] = b"\xff" * 40  # RLE header of the first frame: garbage offsets
    broken.PixelData = bytes(frags)
    _save(broken, src / "broken.dcm")
    video = ultrasound(209).dataset
    video.file_meta.TransferSyntaxUID = MPEG2MPML  # no decoder installed for video
    video.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(96)])
    video["PixelData"].VR = "OB"
    video["PixelData"].is_undefined_length = True
    _save(video, src / "video.dcm")
    results = _deid(src, tmp_path, keys)
    assert results["good.dcm"].status == "ok"
    for name in ("broken.dcm", "video.dcm"):
        assert results[name].status == "rejected", name
        assert results[name].output is None
    assert "pixel data" in results["broken.dcm"].reason
    assert "cannot be decoded" in results["video.dcm"].reason
    written = list((tmp_path / "out").rglob("*.dcm"))
    assert len(written) == 1


def test_overlays_and_icons_are_removed_and_restored(tmp_path, keys):
    src = tmp_path / "in"
    ds = chest_xray(210, rows=512, cols=512).dataset
    ds.BurnedInAnnotation = "YES"
    ds.add_new(0x60000010, "US", 512)
    ds.add_new(0x60000011, "US", 512)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", np.packbits(np.ones(512 * 512, np.uint8), bitorder="little").tobytes())
    icon = Dataset()
    icon.Rows = icon.Columns = 8
    icon.SamplesPerPixel = 1
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.BitsAllocated = icon.BitsStored = 8
    icon.HighBit = 7
    icon.PixelRepresentation = 0
    icon.PixelData = bytes(64)
    ds.IconImageSequence = Sequence([icon])
    originals = {"ov.dcm": _save(ds, src / "ov.dcm")}
    result = _deid(src, tmp_path, keys)["ov.dcm"]
    assert result.status == "ok"
    out = pydicom.dcmread(tmp_path / "out" / result.output)
    assert not [e for e in out if e.tag.group == 0x6000] and "IconImageSequence" not in out
    assert _restored_bytes_equal(tmp_path, keys, originals) == {"ov.dcm": True}


def test_multiframe_original_restores_exactly(tmp_path, keys):
    src = tmp_path / "in"
    ds = ultrasound(211).dataset
    frame = np.frombuffer(ds.PixelData, np.uint8)
    ds.NumberOfFrames = 4
    ds.PixelData = np.concatenate([frame] * 4).tobytes()
    originals = {"cine.dcm": _save(ds, src / "cine.dcm")}
    result = _deid(src, tmp_path, keys)["cine.dcm"]
    assert result.status == "ok" and result.pixels["frames_examined"] == 3
    assert _restored_bytes_equal(tmp_path, keys, originals) == {"cine.dcm": True}


def test_image_header_without_pixel_data_is_not_refused(tmp_path, keys):
    """Rows/Columns but no pixel data (a header-only export): nothing can be burned in."""
    src = tmp_path / "in"
    cr = chest_xray(206).dataset
    del cr.BurnedInAnnotation
    del cr.PixelData
    _save(cr, src / "header.dcm")
    result = _deid(src, tmp_path, keys)["header.dcm"]
    assert result.status == "ok" and result.pixels is None
    never = _deid(src, tmp_path / "never", keys, clean_pixels="never")["header.dcm"]
    assert never.status == "ok"


def test_ultrasound_that_says_no_is_still_cleaned(tmp_path, keys):
    """Devices write BurnedInAnnotation NO over a burned-in banner: risky kinds are checked
    whatever the flag says, and the banner's identity goes."""
    src = tmp_path / "in"
    us = ultrasound(207)
    us.dataset.BurnedInAnnotation = "NO"
    _save(us.dataset, src / "us.dcm")
    result = _deid(src, tmp_path, keys)["us.dcm"]
    assert result.status == "ok" and result.pixels["boxes_removed"] >= 1
    out = pydicom.dcmread(tmp_path / "out" / result.output)
    shown = display_frame(stored_frames(out), 0, out)
    assert legible_identity(shown, us.dataset) == []


def test_an_implicit_vr_palette_ultrasound_is_cleaned_and_restores(tmp_path, keys):
    """pydicom-data's ALOKA ultrasound: implicit VR, segmented palette.  Its descriptors
    were once removed as unlisted text, which left the palette unusable and the file
    refused; now it is cleaned, shown in colour, and restores byte for byte."""
    src = tmp_path / "in"
    src.mkdir()
    original = src / "aloka.dcm"
    original.write_bytes(Path(get_testdata_file("gdcm-US-ALOKA-16.dcm")).read_bytes())
    result = _deid(src, tmp_path, keys)["aloka.dcm"]
    assert result.status == "ok", result.reason
    assert result.pixels["frames_examined"] == 1
    out = pydicom.dcmread(tmp_path / "out" / result.output)
    assert out.PhotometricInterpretation == "PALETTE COLOR" and "RedPaletteColorLookupTableDescriptor" in out
    assert _restored_bytes_equal(tmp_path, keys, {"aloka.dcm": original}) == {"aloka.dcm": True}


def _as_ybr_full_422(ds: Dataset) -> None:
    """``ds``'s 8-bit RGB pixels rewritten uncompressed as YBR_FULL_422 (Y0 Y1 Cb Cr per
    two pixels), as some ultrasound devices store them."""
    from pydicom.pixels import convert_color_space

    ybr = convert_color_space(ds.pixel_array, "RGB", "YBR_FULL").astype(np.uint16)
    chroma = (ybr[:, 0::2, 1:] + ybr[:, 1::2, 1:] + 1) // 2
    packed = np.stack([ybr[:, 0::2, 0], ybr[:, 1::2, 0], chroma[..., 0], chroma[..., 1]], axis=-1)
    ds.PixelData = packed.astype(np.uint8).tobytes()
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0


def test_an_uncompressed_ybr_full_422_ultrasound_is_cleaned_and_restores(tmp_path, keys):
    """Chroma shared by pixel pairs cannot be painted box by box: such files are decoded,
    cleaned and written as RLE Lossless RGB, and the delta keeps the original bytes."""
    src = tmp_path / "in"
    burned = ultrasound(209)
    _as_ybr_full_422(burned.dataset)
    original = _save(burned.dataset, src / "us422.dcm")
    before = display_frame(stored_frames(burned.dataset), 0, burned.dataset)
    assert legible_identity(before, burned.dataset)  # control: the banner is readable
    result = _deid(src, tmp_path, keys)["us422.dcm"]
    assert result.status == "ok", result.reason
    assert result.pixels["boxes_removed"] >= 1
    out = pydicom.dcmread(tmp_path / "out" / result.output)
    assert out.file_meta.TransferSyntaxUID == RLELossless and out.PhotometricInterpretation == "RGB"
    assert legible_identity(display_frame(stored_frames(out), 0, out), burned.dataset) == []
    assert _restored_bytes_equal(tmp_path, keys, {"us422.dcm": original}) == {"us422.dcm": True}


def test_a_compressed_original_is_restored_in_its_own_transfer_syntax(tmp_path, keys):
    """Cleaning rewrites a JPEG 2000 ultrasound as RLE Lossless; restore gives back the
    JPEG 2000 file, header included (the write-back once changed the recorded originals of
    TransferSyntaxUID and PhotometricInterpretation in place, so restore kept RLE's)."""
    from pydicom.uid import JPEG2000Lossless

    src = tmp_path / "in"
    burned = ultrasound(210)
    burned.dataset.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    original = _save(burned.dataset, src / "usj2k.dcm")
    result = _deid(src, tmp_path, keys)["usj2k.dcm"]
    assert result.status == "ok" and result.pixels["boxes_removed"] >= 1, result.reason
    out = pydicom.dcmread(tmp_path / "out" / result.output)
    assert out.file_meta.TransferSyntaxUID == RLELossless
    assert _restored_bytes_equal(tmp_path, keys, {"usj2k.dcm": original}) == {"usj2k.dcm": True}


def test_pixel_data_without_its_geometry_is_refused_not_passed_through(tmp_path, keys):
    src = tmp_path / "in"
    cr = chest_xray(208).dataset
    cr.BurnedInAnnotation = "NO"
    del cr.Rows
    _save(cr, src / "nogeometry.dcm")
    result = _deid(src, tmp_path, keys)["nogeometry.dcm"]
    assert result.status == "rejected" and result.output is None
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_a_codec_panic_does_not_end_the_run(tmp_path, keys, monkeypatch):
    """pylibjpeg-rle panics (a BaseException) on a damaged segment: with no other decoder
    to try, that file is rejected with a reason; the other files of the run are written."""
    from safepacs.deid.pixels import frames

    monkeypatch.setattr(frames, "_PLUGIN_ORDER", ("pylibjpeg",))  # pydicom's own RLE decoder is lenient
    from tests.dicom.test_panics import panicking_rle

    src = tmp_path / "in"
    src.mkdir()
    (src / "damaged.dcm").write_bytes(panicking_rle())
    _save(pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm")), src / "good.dcm")
    results = _deid(src, tmp_path, keys, clean_pixels="always")
    assert results["damaged.dcm"].status == "rejected"
    assert "cannot be decoded (CodecPanic)" in results["damaged.dcm"].reason
    assert results["good.dcm"].status == "ok"


def test_without_deltas_a_re_encoded_original_is_not_held_and_the_output_is_the_same(
    tmp_path, keys, monkeypatch
):
    """The compressed original is kept only for the identity delta: a run without
    --delta-dir lets it go before cleaning (a cine's loop held for nothing was a third of
    the peak memory) and writes the very same file as a run that keeps deltas."""
    from safepacs.deid.pixels import clean

    rle = chest_xray(241).dataset
    rle.BurnedInAnnotation = "YES"
    rle.compress(RLELossless, encoding_plugin="pylibjpeg")
    src = tmp_path / "in"
    _save(rle, src / "rle.dcm")
    seen = []
    real = clean.clean_pixels

    def spy(*args, **kwargs):
        seen.append((kwargs.get("original_group") is not None, kwargs.get("keep_original", True)))
        return real(*args, **kwargs)

    monkeypatch.setattr(clean, "clean_pixels", spy)
    outputs = {}
    for name, deltas in (("kept", tmp_path / "deltas"), ("none", None)):
        job = Job(tmp_path / name, None, Options(), keys.secret, deltas, time.time() - 1)
        (result,) = run(list(discover(src)), job)
        assert result.status == "ok" and result.pixels["boxes_removed"] >= 1, result.reason
        outputs[name] = (tmp_path / name / result.output).read_bytes()
    assert seen == [(True, True), (False, False)]
    assert outputs["kept"] == outputs["none"]
    assert len(list((tmp_path / "deltas").iterdir())) == 1


def _slide(kind: str, seed: int) -> Dataset:
    """A small RGB whole-slide image of ``kind`` (LABEL: a label with a bar code on it)."""
    ds = chest_xray(seed).dataset
    rgb = np.random.default_rng(seed).integers(40, 255, size=(96, 160, 3), dtype=np.uint8)
    rgb[20:70, 30:130:4] = 0  # bars of a code that no OCR reads
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"
    ds.Modality = "SM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", kind, "NONE"]
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PlanarConfiguration = 96, 160, 3, 0
    ds.PhotometricInterpretation = "RGB"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    for keyword in ("WindowCenter", "WindowWidth", "RescaleIntercept", "RescaleSlope", "PresentationLUTShape",
                    "BurnedInAnnotation"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PixelData = rgb.tobytes()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    return ds


def test_a_slides_label_image_is_blanked_whole_and_its_tissue_left_as_it_is(tmp_path, keys):
    src = tmp_path / "in"
    label, volume = _slide("LABEL", 301), _slide("VOLUME", 302)
    volume.SOPInstanceUID = volume.file_meta.MediaStorageSOPInstanceUID = "1.2.3.302"
    originals = {"label.dcm": _save(label, src / "label.dcm"), "volume.dcm": _save(volume, src / "volume.dcm")}
    results = _deid(src, tmp_path, keys)
    assert results["label.dcm"].status == "ok" and "device-region" in results["label.dcm"].pixels["rules"]
    blanked = pydicom.dcmread(tmp_path / "out" / results["label.dcm"].output)
    assert len(set(blanked.PixelData)) == 1 and blanked.BurnedInAnnotation == "NO"
    assert results["volume.dcm"].status == "ok" and results["volume.dcm"].pixels is None
    assert pydicom.dcmread(tmp_path / "out" / results["volume.dcm"].output).PixelData == volume.PixelData
    assert _restored_bytes_equal(tmp_path, keys, originals) == {"label.dcm": True, "volume.dcm": True}
