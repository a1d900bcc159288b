"""Frames and rendering from synthetic pixel data built in the test."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian

from safepacs.api import pixels
from safepacs.archive.errors import BadFrame


def image(arr: np.ndarray, photometric: str = "MONOCHROME2", **extra) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    frames = arr.shape[0] if arr.ndim == 3 else 1
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for k, v in extra.items():
        setattr(ds, k, v)
    ds.PixelData = arr.astype("<u2").tobytes()
    return ds


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_native_frames_are_byte_slices():
    arr = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    ds = image(arr)
    got = pixels.frames(ds, [3, 1])
    assert got == [arr[2].astype("<u2").tobytes(), arr[0].astype("<u2").tobytes()]
    with pytest.raises(BadFrame):
        pixels.frames(ds, [4])


@pytest.mark.parametrize("rows,columns", [(4, 4), (3, 5)], ids=["byte-aligned", "mid-byte"])
def test_one_bit_frames_are_repacked_from_their_own_first_bit(rows, columns):
    rng = np.random.default_rng(7)
    masks = rng.integers(0, 2, size=(3, rows, columns), dtype=np.uint8)
    ds = image(np.zeros((3, rows, columns)))
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelData = np.packbits(masks.ravel(), bitorder="little").tobytes()  # frames unpadded
    got = pixels.frames(ds, [2, 3, 1])
    for data, k in zip(got, [2, 3, 1], strict=True):
        bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
        assert len(data) == (rows * columns + 7) // 8
        assert (bits[: rows * columns].reshape(rows, columns) == masks[k - 1]).all()
        assert not bits[rows * columns :].any()
    with pytest.raises(BadFrame):
        pixels.frames(ds, [4])


@pytest.mark.parametrize("value", ["1A", "-2"])
def test_a_malformed_frame_count_is_unsplittable_not_echoed(value):
    ds = image(np.zeros((2, 4, 4)))
    raw = value.encode() + b" " * (len(value) % 2)  # as written by a careless modality
    ds[0x00280008] = RawDataElement(Tag(0x00280008), "IS", len(raw), raw, 0, False, True)
    with pytest.raises(LookupError) as err:
        pixels.frames(ds, [1])
    assert value not in str(err.value)


def test_render_stretches_to_the_data_range_without_a_window():
    arr = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    out = decode(pixels.render(image(arr)))
    assert out[0, 0] == 0 and out[1, 1] == 255
    assert 0 < out[0, 1] < out[1, 0] < 255


def test_window_from_query_overrides_header_and_clips():
    arr = np.array([[0, 100], [200, 300]], dtype=np.uint16)
    ds = image(arr, WindowCenter="1000", WindowWidth="10")
    header = decode(pixels.render(ds))
    assert (header == 0).all()  # everything is below the header window
    asked = decode(pixels.render(ds, window=(150.5, 301)))
    assert asked[0, 0] == 0 and asked[1, 1] == 255 and 0 < asked[0, 1] < 255


def test_monochrome1_is_inverted():
    arr = np.array([[0, 4000]], dtype=np.uint16)
    m2 = decode(pixels.render(image(arr)))
    m1 = decode(pixels.render(image(arr, "MONOCHROME1")))
    assert (m1 == 255 - m2).all()


def test_jpeg_output_and_frame_choice():
    arr = np.zeros((2, 8, 8), dtype=np.uint16)
    arr[1] = 4000
    arr[1, 0, 0] = 0
    jpeg = pixels.render(image(arr), frame=2, fmt="jpeg")
    assert jpeg[:2] == b"\xff\xd8"
    assert decode(pixels.render(image(arr), frame=2))[4, 4] == 255
    with pytest.raises(ValueError):
        pixels.render(image(arr), frame=3)


@pytest.mark.parametrize("bad", ["1", "a,b", "10,0", "10,-5", "1,2,3,4", "nan,10"])
def test_malformed_window_is_refused(bad):
    with pytest.raises(ValueError):
        pixels.parse_window(bad)


@pytest.mark.parametrize("keyword,dtype", [("FloatPixelData", "<f4"), ("DoubleFloatPixelData", "<f8")])
def test_parametric_map_frames_are_sliced_from_float_pixel_data(keyword, dtype):
    """A Parametric Map keeps its values in (Double) Float Pixel Data, never Pixel Data."""
    arr = (np.arange(3 * 4 * 5).reshape(3, 4, 5) / 7.0).astype(dtype)
    ds = image(np.zeros((3, 4, 5)))
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation  # not in these modules
    ds.BitsAllocated = arr.itemsize * 8
    setattr(ds, keyword, arr.tobytes())
    assert pixels.frames(ds, [2, 3]) == [arr[1].tobytes(), arr[2].tobytes()]
    with pytest.raises(BadFrame):
        pixels.frames(ds, [4])


def test_frames_are_split_by_fragment_when_the_offset_table_cannot_be_right():
    import pydicom
    from pydicom.data import get_testdata_file

    from tests.deid.pixels.test_frames import with_wrong_offset_table

    good = pydicom.dcmread(get_testdata_file("emri_small_RLE.dcm"))
    bad = with_wrong_offset_table(good)
    assert pixels.frames(bad, [1, 7, 10]) == pixels.frames(good, [1, 7, 10])


def _testfile(name: str) -> Dataset:
    import pydicom
    from pydicom.data import get_testdata_file

    return pydicom.dcmread(get_testdata_file(name))


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm"])
def test_native_frames_are_the_decoded_values_little_endian(name):
    ds = _testfile(name)
    (got,) = pixels.native_frames(ds, [1])
    want = ds.pixel_array
    assert got == want.astype(want.dtype.newbyteorder("<")).tobytes()
    assert len(got) == ds.Rows * ds.Columns * 2


def test_native_frames_of_a_multiframe_object_are_the_ones_asked_for():
    ds = _testfile("emri_small_jpeg_2k_lossless.dcm")
    got = pixels.native_frames(ds, [7, 3])
    want = ds.pixel_array
    assert got == [want[6].astype("<u2").tobytes(), want[2].astype("<u2").tobytes()]
    with pytest.raises(BadFrame):
        pixels.native_frames(ds, [11])


def test_native_rgb_frames_follow_the_planar_configuration_of_the_header():
    ds = _testfile("SC_rgb_rle_2frame.dcm")
    want = ds.pixel_array  # (frames, rows, columns, 3)
    assert pixels.native_frames(ds, [2]) == [want[1].tobytes()]
    ds.PlanarConfiguration = 1  # native data described plane by plane
    assert pixels.native_frames(ds, [2]) == [want[1].transpose(2, 0, 1).tobytes()]


@pytest.mark.parametrize("name", ["SC_rgb_dcmtk_+eb+cy+s2.dcm", "US1_J2KR.dcm"])
def test_frames_whose_decoding_changes_their_colour_model_are_not_decoded(name):
    """A YBR_FULL_422 JPEG decodes to full-resolution YBR, a YBR_RCT JPEG 2000 to RGB: sent
    uncompressed, the client would read them by the header's (wrong) description."""
    with pytest.raises(pixels.NotDecodable, match="transfer-syntax=\\*"):
        pixels.native_frames(_testfile(name), [1])


def test_undecodable_frames_are_refused_as_not_decodable():
    ds = _testfile("MR_small_RLE.dcm")
    ds.PixelData = ds.PixelData[:40] + b"\xff" * 40
    with pytest.raises(pixels.NotDecodable):
        pixels.native_frames(ds, [1])
