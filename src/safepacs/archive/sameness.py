"""Whether two encodings of one SOP Instance hold the same object.

The archive first compares content hashes of the de-identified bytes.  The same object can
arrive again encoded otherwise: sent through another door (STOW-RS, then C-STORE from DCMTK,
which pads odd-length values, gives sequences defined lengths, or converts between implicit
and explicit VR), or re-fragmented on the way.  Refusing that as "other content" (0x0111)
tells the sender its object failed when it is stored.  So, when the hashes differ, the two
objects are compared by what they say: every element's value (padding, VR encoding and
sequence lengths aside) and the pixel values (compressed frames as such, or decoded when the
encodings differ).  Anything that cannot be compared is "not the same": the sender then
gets the Conflict, and what is stored stays untouched.  Pure: bytes in, a bool out.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.encaps import generate_frames
from pydicom.multival import MultiValue

from safepacs.dicom.image import PIXEL_TAGS, frame_count


def same_object(stored: bytes, candidate: bytes) -> bool:
    """``stored`` and ``candidate`` (Part 10 bytes) hold the same data set and pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = pydicom.dcmread(io.BytesIO(stored))
            b = pydicom.dcmread(io.BytesIO(candidate))
            return _same_dataset(a, b, top=True) and _same_pixels(a, b)
    except Exception:  # noqa: BLE001 - anything unreadable is not shown to be the same
        return False


def _same_dataset(a: Dataset, b: Dataset, *, top: bool) -> bool:
    tags_a, tags_b = _tags(a, top), _tags(b, top)
    if tags_a != tags_b:
        return False
    return all(_same_element(a[tag], b[tag]) for tag in tags_a)


def _tags(ds: Dataset, top: bool) -> set[int]:
    """Tags that carry content: no group lengths, and at the top the pixels apart."""
    return {int(t) for t in ds.keys() if t.element != 0 and not (top and int(t) in PIXEL_TAGS)}


def _same_element(a: DataElement, b: DataElement) -> bool:
    if a.VR == "SQ" or b.VR == "SQ":
        if a.VR != b.VR or len(a.value) != len(b.value):
            return False
        return all(_same_dataset(x, y, top=False) for x, y in zip(a.value, b.value, strict=True))
    return _normal(a.value) == _normal(b.value)


def _normal(value: object) -> object:
    """A value with what encodings differ in taken out: trailing padding, multi-value types."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).rstrip(b"\x00 ")
    if isinstance(value, (list, MultiValue)):
        return [_normal(v) for v in value]
    if isinstance(value, str):
        return value.rstrip("\x00 ")
    return value


def _same_pixels(a: Dataset, b: Dataset) -> bool:
    pa = [t for t in PIXEL_TAGS if t in a]
    pb = [t for t in PIXEL_TAGS if t in b]
    if pa != pb:
        return False
    if not pa:
        return True
    tag = pa[0]
    ts_a, ts_b = a.file_meta.TransferSyntaxUID, b.file_meta.TransferSyntaxUID
    raw_a, raw_b = a[tag].value, b[tag].value
    native = not ts_a.is_encapsulated and not ts_b.is_encapsulated
    if native and ts_a.is_little_endian == ts_b.is_little_endian:
        return _normal(raw_a) == _normal(raw_b)
    if ts_a == ts_b and ts_a.is_encapsulated:
        n = frame_count(a)
        if n is not None and n == frame_count(b):
            if list(generate_frames(raw_a, number_of_frames=n)) == list(generate_frames(raw_b, number_of_frames=n)):
                return True  # the same compressed frames, fragmented otherwise
    if tag != 0x7FE00010:
        return False
    from safepacs.deid.pixels.frames import decode

    return bool(np.array_equal(decode(a)[0], decode(b)[0]))
