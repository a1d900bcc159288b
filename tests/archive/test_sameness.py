"""Two encodings of one object are the same object; any change of content is not."""

from __future__ import annotations

import copy
import io

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from safepacs.archive.sameness import same_object


def encoded(ds: pydicom.Dataset, *, implicit: bool = False) -> bytes:
    ds = copy.deepcopy(ds)
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture
def ct() -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def test_explicit_and_implicit_vr_encodings_are_the_same_object(ct):
    assert ct.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert same_object(encoded(ct), encoded(ct, implicit=True))


def test_padding_and_sequence_lengths_do_not_make_another_object(ct):
    other = copy.deepcopy(ct)
    other.StudyDescription = "CHEST"
    padded = copy.deepcopy(other)
    padded["StudyDescription"].value = "CHEST "  # what a sender that pads writes
    seq = pydicom.Dataset()
    seq.CodeValue, seq.CodingSchemeDesignator, seq.CodeMeaning = "T-D3000", "SRT", "Chest"
    other.AnatomicRegionSequence = [seq]
    padded.AnatomicRegionSequence = [copy.deepcopy(seq)]
    padded["AnatomicRegionSequence"].is_undefined_length = True
    assert same_object(encoded(other), encoded(padded))


@pytest.mark.parametrize("change", [
    lambda d: setattr(d, "StudyDescription", "ABDOMEN"),
    lambda d: setattr(d, "SeriesNumber", 99),
    lambda d: delattr(d, "SliceLocation"),
    lambda d: setattr(d, "ImageComments", "added"),
    lambda d: setattr(d, "PixelData", d.PixelData[:-2] + b"\x01\x00"),
])
def test_any_change_of_content_is_another_object(ct, change):
    other = copy.deepcopy(ct)
    change(other)
    assert not same_object(encoded(ct), encoded(other))


def test_compressed_frames_fragmented_otherwise_are_the_same_object():
    ds = pydicom.dcmread(get_testdata_file("emri_small_RLE.dcm"))
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    refragmented = copy.deepcopy(ds)
    refragmented.PixelData = encapsulate(frames, fragments_per_frame=2)  # RLE: split anywhere
    assert refragmented.PixelData != ds.PixelData
    assert same_object(encoded(ds), encoded(refragmented))


def test_a_decompressed_copy_is_the_same_object_and_a_changed_one_is_not():
    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    plain = copy.deepcopy(ds)
    plain.decompress(generate_instance_uid=False)
    assert same_object(encoded(ds), encoded(plain))
    arr = plain.pixel_array.copy()
    arr[0, 0] += 1
    plain.PixelData = arr.tobytes()
    assert not same_object(encoded(ds), encoded(plain))
    assert plain.file_meta.TransferSyntaxUID != RLELossless


@pytest.mark.parametrize("junk", [b"", b"not dicom at all", b"\x00" * 200])
def test_what_cannot_be_read_is_never_the_same(ct, junk):
    assert not same_object(encoded(ct), junk)
    assert not same_object(junk, encoded(ct))
