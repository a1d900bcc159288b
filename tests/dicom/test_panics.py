"""A native codec's panic (a BaseException) becomes an ordinary error; interrupts do not."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.data import get_testdata_file

from safepacs.dicom.panics import CodecPanic, panics_as_errors


def panicking_rle(**changes: str) -> bytes:
    """pydicom's MR_small_RLE.dcm with one byte of a segment changed: pylibjpeg-rle (Rust)
    panics on it ("index out of bounds").  ``changes`` are set first (e.g. Modality)."""
    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    fp = io.BytesIO()
    ds.save_as(fp, enforce_file_format=True)
    data = bytearray(fp.getvalue())
    data[data.index(b"\xe0\x7f\x10\x00") + 1855] = 195  # found by mutating segment bytes
    return bytes(data)


class _Panic(BaseException):
    """Stands for pyo3's PanicException (which derives from BaseException)."""


def test_a_panic_becomes_codec_panic():
    with pytest.raises(CodecPanic, match=r"\(_Panic\)"):
        with panics_as_errors():
            raise _Panic("index out of bounds")


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, ValueError])
def test_interrupts_exits_and_ordinary_errors_pass_unchanged(exc):
    with pytest.raises(exc):
        with panics_as_errors():
            raise exc()


def test_the_rust_rle_decoder_really_panics_on_the_damaged_object():
    ds = pydicom.dcmread(io.BytesIO(panicking_rle()))
    with pytest.raises(BaseException) as err:
        _ = ds.pixel_array
    assert not isinstance(err.value, Exception)  # what `except Exception` would have missed
    with pytest.raises(CodecPanic):
        with panics_as_errors():
            _ = pydicom.dcmread(io.BytesIO(panicking_rle())).pixel_array
