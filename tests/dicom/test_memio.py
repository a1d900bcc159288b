"""Parsing from memory is as strict as parsing files, and writes the same bytes."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from safepacs.deid.engine import deidentify_inplace
from safepacs.deid.keys import Keys
from safepacs.deid.options import Options
from safepacs.dicom import memio
from safepacs.dicom.io import read_header, write_atomic
from safepacs.errors import InvalidDicom

CT = Path(get_testdata_file("CT_small.dcm"))
DEFLATED = Path(get_testdata_file("image_dfl.dcm"))


def _with_length(data: bytes, new_len: int) -> bytes:
    i = data.find(b"\x10\x00\x10\x00PN")
    return data[: i + 6] + new_len.to_bytes(2, "little") + data[i + 8 :]


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda b: b"", "empty object"),
        (lambda b: b"not dicom at all\n" * 20, "no DICM prefix"),
        (lambda b: b[:600], "cut short"),
        (lambda b: b[:-1000], "truncated"),
        (lambda b: _with_length(b, 60000), "truncated"),
        (lambda b: _with_length(b, 19), "invalid VR"),
    ],
)
def test_malformed_objects_are_refused_without_values(mutate, reason):
    data = mutate(CT.read_bytes())
    with pytest.raises(InvalidDicom, match=reason) as err:
        memio.parse(data, "part1")
    assert str(err.value).startswith("part1: ")
    assert "CompressedSamples" not in str(err.value)  # CT_small's patient name


def test_pixels_are_located_not_decoded():
    data = CT.read_bytes()
    parsed = memio.parse(data)
    assert "PixelData" not in parsed.dataset
    assert parsed.pixel_start is not None and parsed.pixel_end is not None
    assert data[parsed.pixel_start : parsed.pixel_start + 4] == b"\xe0\x7f\x10\x00"
    assert parsed.trailer is not None and "DataSetTrailingPadding" in parsed.trailer


@pytest.mark.parametrize("path", [CT, DEFLATED], ids=["ct", "deflated"])
def test_deidentified_bytes_equal_what_the_file_path_writes(tmp_path, path):
    keys, options = Keys(b"\x05" * 32), Options(accept_burned_in_risk=True)
    parsed = memio.parse(path.read_bytes())
    deidentify_inplace(parsed.dataset, options, keys)
    from_memory = memio.serialise(parsed)
    src = read_header(path)
    deidentify_inplace(src.dataset, options, keys)
    write_atomic(src, src.dataset, tmp_path / "out.dcm")
    assert from_memory == (tmp_path / "out.dcm").read_bytes()
    assert b"".join(bytes(p) for p in memio.serialise_parts(parsed)) == from_memory


def test_round_trip_keeps_every_element_and_the_pixels():
    data = CT.read_bytes()
    again = pydicom.dcmread(io.BytesIO(memio.serialise(memio.parse(data))))
    original = pydicom.dcmread(CT)
    assert again.PixelData == original.PixelData
    assert again.PatientName == original.PatientName
    assert [e.tag for e in again] == [e.tag for e in original if e.tag != 0xFFFCFFFC]


def test_bare_dataset_without_meta_is_accepted_when_whole():
    ds = pydicom.dcmread(CT)
    del ds[0xFFFCFFFC]
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = True, True
    write_dataset(fp, ds)
    bare = fp.getvalue()
    parsed = memio.parse(bare)
    assert parsed.dataset.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert parsed.pixel_end == len(bare)
    with pytest.raises(InvalidDicom):
        memio.parse(bare[:-10])
