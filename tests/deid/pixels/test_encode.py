"""Writing cleaned pixels back: native stays native, compressed becomes RLE Lossless,
never a new lossy step and never a silent one."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from safepacs.deid.pixels.encode import write_back
from safepacs.deid.pixels.frames import stored_frames
from tests.deid.pixels.conftest import image, ramp


def test_native_data_keeps_its_transfer_syntax_and_layout():
    values = ramp(2, 6, 8, np.uint16, 0, 4000)
    ds = image(values, "MONOCHROME2", bits_stored=12)
    stored = stored_frames(ds)
    stored.array[1, 0, 0, 0] = 77
    write_back(ds, stored)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    expected = values.copy()
    expected[1, 0, 0] = 77
    assert ds.PixelData == expected.astype("<u2").tobytes()


@pytest.mark.parametrize(
    ("name", "lossy"),
    [("MR_small_RLE.dcm", False), ("JPEG-LL.dcm", False), ("MR_small_jpeg_ls_lossless.dcm", False),
     ("RG1_J2KR.dcm", False), ("SC_rgb_dcmtk_+eb+cy+np.dcm", True), ("JPGExtended.dcm", True),
     ("color3d_jpeg_baseline.dcm", True), ("SC_rgb_rle_2frame.dcm", False)],
)
def test_compressed_data_is_re_encoded_losslessly(name, lossy):
    ds = pydicom.dcmread(get_testdata_file(name))
    sop = ds.SOPInstanceUID
    stored = stored_frames(ds)
    stored.array[:, :4, :4] = 0
    expected = stored.array.copy()
    write_back(ds, stored)
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    assert ds.SOPInstanceUID == sop  # identity is the header engine's business
    again = ds.pixel_array.reshape(expected.shape)
    assert np.array_equal(again, expected)  # lossless: every value as redacted
    if lossy:
        assert ds.LossyImageCompression == "01"  # the history of loss is kept, not hidden
    else:
        assert ds.get("LossyImageCompression", "00") == "00"
    if ds.SamplesPerPixel == 3:
        assert ds.PhotometricInterpretation == "RGB" and ds.PlanarConfiguration == 0


def test_lossy_ratio_and_method_history_are_untouched():
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_dcmtk_+eb+cy+np.dcm"))
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = ["8.5"]
    ds.LossyImageCompressionMethod = ["ISO_10918_1"]
    write_back(ds, stored_frames(ds))
    assert ds.LossyImageCompressionRatio == 8.5
    assert ds.LossyImageCompressionMethod == "ISO_10918_1"


@pytest.mark.parametrize("name", ["SC_rgb_rle_2frame.dcm", "color3d_jpeg_baseline.dcm", "JPEG-LL.dcm"])
def test_re_encoded_frames_are_encapsulated_as_pydicom_does(name):
    """The one-pass encapsulation (a cine's encoded frames are held twice, not three times)
    writes the bytes pydicom's ``encapsulate`` writes for the same frames: a Basic Offset
    Table pointing at each frame's item, then one even-length item per frame."""
    from pydicom.encaps import encapsulate, generate_frames
    from rle.utils import encode_frame

    ds = pydicom.dcmread(get_testdata_file(name))
    stored = stored_frames(ds)
    stored.array[:, :3, :5] = 1
    lay = stored.layout
    frames = [encode_frame(np.ascontiguousarray(stored.array[f]).tobytes(), lay.rows, lay.columns,
                           lay.samples, lay.bits_allocated, "<") for f in range(lay.frames)]
    write_back(ds, stored)
    assert ds.PixelData == encapsulate(frames)
    assert list(generate_frames(ds.PixelData, number_of_frames=lay.frames)) == frames


def test_the_old_frames_are_let_go_before_the_new_ones_are_joined(monkeypatch):
    """Once every frame is re-encoded, the compressed frames are not needed again: they are
    dropped before the new ones are joined into one value, so both are never held whole
    beside the joined copy."""
    from safepacs.deid.pixels import encode

    ds = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))
    stored = stored_frames(ds)
    expected = stored.array.copy()
    old_still_held = []
    real = encode._encapsulated

    def spy(frames):
        old_still_held.append("PixelData" in ds)
        return real(frames)

    monkeypatch.setattr(encode, "_encapsulated", spy)
    write_back(ds, stored)
    assert old_still_held == [False]
    assert np.array_equal(ds.pixel_array.reshape(expected.shape), expected)


def test_without_pylibjpeg_rle_pydicom_encodes_and_missing_frames_are_refused(monkeypatch):
    """pydicom's own RLE encoder takes over without the plugin (same pixels back); frames
    that never came are an error, never an image with a frame of leftovers."""
    from safepacs.deid.pixels import encode
    from safepacs.deid.pixels.frames import PixelError

    ds = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))
    stored = stored_frames(ds)
    stored.array[:, :4, :4] = 0
    expected = stored.array.copy()
    monkeypatch.setattr(encode, "_rle_encoder", lambda: None)
    write_back(ds, stored)
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    assert np.array_equal(ds.pixel_array.reshape(expected.shape), expected)
    monkeypatch.undo()
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))
    stored = stored_frames(ds)
    with pytest.raises(PixelError, match="lack frames"):
        encode.write_back_frames(ds, stored.layout, [(0, stored.frame(0))])
