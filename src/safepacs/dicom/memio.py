"""Parse a Part 10 object from bytes and write one back to bytes, never touching disk.

The archive receives objects in memory (STOW bodies, C-STORE datasets, files it reads
once) and must not leave plaintext on disk, so this is :mod:`safepacs.dicom.io` without
files: the same byte-by-byte structure check before anything is trusted, the same header
parse that stops before the pixel data, and the pixel bytes carried over as a slice of the
input instead of being decoded and re-encoded.
"""

from __future__ import annotations

import io
import warnings
import zlib
from dataclasses import dataclass

import pydicom
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from safepacs.dicom.io import (
    _split_at_pixels,
    _why,
    _write_fast,
    check_whole,
    locate,
    locate_bare,
    write_meta,
    written_back,
)
from safepacs.errors import InvalidDicom

_PREAMBLE = b"\x00" * 128 + b"DICM"


@dataclass
class Parsed:
    """A parsed object: its header and where its pixel bytes lie in ``data``."""

    dataset: Dataset
    data: bytes
    pixel_start: int | None = None
    pixel_end: int | None = None
    trailer: Dataset | None = None  # elements after the pixel data
    whole: bool = False  # the dataset holds everything (slow path); write it as it is
    name: str = "object"

    def pixel_group_bytes(self) -> bytes:
        """The pixel-group elements exactly as they lie in ``data``."""
        assert self.pixel_start is not None and self.pixel_end is not None
        return self.data[self.pixel_start : self.pixel_end]

    def pixels_replaced(self) -> None:
        """The dataset now holds new pixel data: serialise it instead of the input's bytes."""
        self.pixel_start = self.pixel_end = None


def parse(data: bytes, name: str = "object") -> Parsed:
    """Parse a DICOM Part 10 object (or a bare dataset) held in memory.

    Raises :class:`InvalidDicom` with a reason that names ``name`` and the problem, never
    a value from the object.
    """
    size = len(data)
    if size == 0:
        raise InvalidDicom(f"{name}: empty object")
    if size < 132 or data[128:132] != b"DICM":
        return _parse_headerless(data, name)
    found = locate(io.BytesIO(data), size, name)
    if found is None:
        return _parse_whole(data, name)
    return Parsed(data=data, name=name, **dict(zip(_LOCATED, found, strict=True)))


_LOCATED = ("dataset", "pixel_start", "pixel_end", "trailer")


def _parse_whole(data: bytes, name: str) -> Parsed:
    """Slow path (deflated, big endian, encoding other than declared): read it all."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
            for _ in ds.iterall():
                pass
    except Exception as exc:  # noqa: BLE001
        raise InvalidDicom(f"{name}: malformed DICOM ({_why(exc)})") from None
    check_whole(ds, name)
    return Parsed(ds, data, whole=True)


def _parse_headerless(data: bytes, name: str) -> Parsed:
    """A bare little-endian dataset, accepted as :func:`~safepacs.dicom.io.locate_bare` says."""
    ds, start, end, trailer = locate_bare(data, name)
    if start is None:
        return Parsed(ds, data, whole=True, name=name)
    return Parsed(ds, data, start, end, trailer, name=name)


def serialise(parsed: Parsed, ds: Dataset | None = None) -> bytes:
    """Part 10 bytes of ``ds`` (default: the parsed dataset) with the parsed pixel bytes.

    The 128-byte preamble is zeroed and elements after the pixel data are not written
    (de-identification records them in the delta).
    """
    return b"".join(serialise_parts(parsed, ds))


def serialise_parts(parsed: Parsed, ds: Dataset | None = None) -> list[bytes | memoryview]:
    """:func:`serialise` as parts whose concatenation is the object: the pixel bytes stay
    a view of the input, so an encryptor can read them without any copy."""
    with written_back("object"):
        return _serialise_parts(parsed, parsed.dataset if ds is None else ds)


def _serialise_parts(parsed: Parsed, ds: Dataset) -> list[bytes | memoryview]:
    meta = ds.file_meta
    tsuid = meta.TransferSyntaxUID
    implicit = tsuid == ImplicitVRLittleEndian
    little = tsuid != ExplicitVRBigEndian
    fp = DicomBytesIO()
    fp.write(_PREAMBLE)
    write_meta(fp, meta, enforce_standard=True)
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    if tsuid == DeflatedExplicitVRLittleEndian:
        body = DicomBytesIO()
        body.is_implicit_VR, body.is_little_endian = False, True
        write_dataset(body, ds)
        comp = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        return [fp.getvalue(), comp.compress(body.getvalue()) + comp.flush()]
    if parsed.whole or not little:
        write_dataset(fp, ds)
        return [fp.getvalue()]
    if parsed.pixel_start is None or parsed.pixel_end is None:
        _write_fast(fp, ds, implicit, little)
        return [fp.getvalue()]
    head, tail = _split_at_pixels(ds)
    _write_fast(fp, head, implicit, little)
    parts = [fp.getvalue(), memoryview(parsed.data)[parsed.pixel_start : parsed.pixel_end]]
    if tail is not None:
        tp = DicomBytesIO()
        tp.is_implicit_VR, tp.is_little_endian = implicit, little
        write_dataset(tp, tail)
        parts.append(tp.getvalue())
    return parts


def to_bytes(ds: Dataset) -> bytes:
    """Part 10 bytes of a complete in-memory dataset (pixels included), via pydicom."""
    fp = io.BytesIO()
    ds.save_as(fp, enforce_file_format=True)
    return fp.getvalue()


__all__ = ["Parsed", "parse", "serialise", "serialise_parts", "to_bytes"]
