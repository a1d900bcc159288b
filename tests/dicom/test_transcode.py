"""A stored object as Explicit VR Little Endian: the same instance, or NotConvertible."""

from __future__ import annotations

import copy
import io

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, RLELossless

from safepacs.dicom.transcode import NotConvertible, needs_conversion, to_explicit_little_endian


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm",
                                  "emri_small_jpeg_2k_lossless.dcm", "SC_rgb_rle_2frame.dcm",
                                  "MR_small_implicit.dcm"])
def test_the_same_instance_comes_out_uncompressed_little_endian(name):
    ds = pydicom.dcmread(get_testdata_file(name))
    before = copy.deepcopy(ds)
    out = to_explicit_little_endian(ds)
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.SOPInstanceUID == ds.SOPInstanceUID  # pydicom's decompress mints a new one
    assert np.array_equal(out.pixel_array, ds.pixel_array)
    assert out.get("NumberOfFrames") == ds.get("NumberOfFrames")
    assert ds == before and ds.file_meta == before.file_meta  # the input is not changed
    buf = io.BytesIO()
    out.save_as(buf, enforce_file_format=True)  # and it is written as what it says it is
    back = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(back.pixel_array, ds.pixel_array) and back.PatientName == ds.PatientName


def test_frames_that_do_not_match_their_count_are_not_converted():
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_2frame.dcm"))
    ds.compress(RLELossless)
    ds.NumberOfFrames = 3  # two fragments: never sent as a two-frame object
    with pytest.raises(NotConvertible):
        to_explicit_little_endian(ds)


def test_undecodable_pixel_data_is_not_converted_and_not_quoted():
    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    ds.PixelData = ds.PixelData[:64] + b"\xfe" * 64
    with pytest.raises(NotConvertible) as err:
        to_explicit_little_endian(ds)
    assert "\\xfe" not in str(err.value) and "fe fe" not in str(err.value)


def test_big_endian_subsampled_colour_is_not_converted():
    ds = pydicom.dcmread(get_testdata_file("SC_ybr_full_422_uncompressed.dcm"))
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    with pytest.raises(NotConvertible, match="YBR_FULL_422"):
        to_explicit_little_endian(ds)


@pytest.mark.parametrize(("uid", "needed"), [("1.2.840.10008.1.2", False), ("1.2.840.10008.1.2.1", False),
                                             ("1.2.840.10008.1.2.2", True), ("1.2.840.10008.1.2.5", True),
                                             ("1.2.840.10008.1.2.4.90", True)])
def test_needs_conversion(uid, needed):
    assert needs_conversion(uid) is needed
