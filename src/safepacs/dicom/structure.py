"""A strict structural check of a DICOM byte stream: tags, VRs and lengths, no values.

pydicom is deliberately lenient: a file cut short or an element with a wrong length is
read "as far as it goes", and garbage after the error becomes elements with odd tags.  An
archive must not accept such a file as if it were whole, so before de-identification the
header bytes are walked once here: every element header must be complete, explicit VRs
must be real VRs, every length must fit inside its file, item or sequence, and tags must
ascend within each dataset.  Values are never looked at, so error messages carry no PHI.
"""

from __future__ import annotations

import struct

from pydicom.datadict import dictionary_VR

from safepacs.dicom.image import PIXEL_TAGS

UNDEFINED = 0xFFFFFFFF
_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}
_LONG = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_MAX_DEPTH = 32


class StructureError(ValueError):
    """The byte stream is not well-formed DICOM; the message names tags and offsets only."""


def _tag_str(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _is_sq_implicit(tag: int, length: int) -> bool:
    if length == UNDEFINED:
        return True
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


class _Scanner:
    def __init__(self, buf: bytes, implicit: bool, little: bool) -> None:
        self.buf = memoryview(buf)
        self.implicit = implicit
        self.en = "<" if little else ">"

    def header(self, pos: int, end: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
        """(tag, vr, length, value offset) of the element at ``pos``."""
        if pos + 8 > end:
            raise StructureError(f"element header cut short at byte {pos}")
        group, elem = struct.unpack_from(self.en + "HH", self.buf, pos)
        tag = (group << 16) | elem
        if group == 0xFFFE:
            (length,) = struct.unpack_from(self.en + "L", self.buf, pos + 4)
            return tag, None, length, pos + 8
        if implicit:
            (length,) = struct.unpack_from(self.en + "L", self.buf, pos + 4)
            return tag, None, length, pos + 8
        vr = bytes(self.buf[pos + 4 : pos + 6])
        if vr not in _VRS:
            raise StructureError(f"invalid VR at byte {pos + 4} for element {_tag_str(tag)}")
        if vr in _LONG:
            if pos + 12 > end:
                raise StructureError(f"element header cut short at byte {pos}")
            (length,) = struct.unpack_from(self.en + "L", self.buf, pos + 8)
            return tag, vr, length, pos + 12
        (length,) = struct.unpack_from(self.en + "H", self.buf, pos + 6)
        return tag, vr, length, pos + 8

    def dataset(
        self, pos: int, end: int, implicit: bool, depth: int, *, stop_at_pixels: bool = False,
        until_item_end: bool = False, stop_after_one: bool = False,
    ) -> int:
        """Check a dataset from ``pos``; return the offset where it ended."""
        if depth > _MAX_DEPTH:
            raise StructureError("sequences nested too deeply")
        last = -1
        while pos < end:
            tag, vr, length, value = self.header(pos, end, implicit)
            if tag == _ITEM_END and until_item_end:
                return value
            if tag >> 16 == 0xFFFE:
                raise StructureError(f"unexpected delimiter {_tag_str(tag)} at byte {pos}")
            if stop_at_pixels and depth == 0 and tag in PIXEL_TAGS:
                return pos
            if tag <= last:
                raise StructureError(
                    f"element {_tag_str(tag)} at byte {pos} is out of order (after {_tag_str(last)})"
                )
            last = tag
            is_sq = vr == b"SQ" if vr is not None else _is_sq_implicit(tag, length)
            if vr == b"UN" and length == UNDEFINED:
                is_sq, inner_implicit = True, True
            else:
                inner_implicit = implicit
            if is_sq:
                pos = self.sequence(value, end, length, inner_implicit, depth + 1)
            elif length == UNDEFINED and tag in PIXEL_TAGS and vr in (None, b"OB", b"OW"):
                # compressed pixel data nested in an item (an Icon Image Sequence of a
                # compressed object is encapsulated too, PS3.5 A.4)
                pos = self.fragments(value, end)
            elif length == UNDEFINED:
                raise StructureError(f"element {_tag_str(tag)} at byte {pos} has undefined length")
            else:
                pos = value + length
                if pos > end:
                    raise StructureError(
                        f"element {_tag_str(tag)} at byte {value} needs {length} bytes, "
                        f"{max(end - value, 0)} present (truncated file or wrong length)"
                    )
            if stop_after_one:
                return pos
        if until_item_end:
            raise StructureError("item not terminated (truncated file)")
        return pos

    def fragments(self, pos: int, end: int) -> int:
        """Check encapsulated pixel data from its first item; return the offset past its
        sequence delimiter."""
        while True:
            tag, _, length, value = self.header(pos, end, True)
            if tag == _SEQ_END:
                return value
            if tag != _ITEM or length == UNDEFINED:
                raise StructureError(f"encapsulated pixel data: no fragment item at byte {pos}")
            pos = value + length
            if pos > end:
                raise StructureError(f"fragment at byte {value} needs {length} bytes (truncated)")

    def sequence(self, pos: int, end: int, length: int, implicit: bool, depth: int) -> int:
        if length != UNDEFINED:
            stop = pos + length
            if stop > end:
                raise StructureError(f"sequence at byte {pos} needs {length} bytes (truncated)")
            while pos < stop:
                pos = self.item(pos, stop, implicit, depth)
            return stop
        while True:
            tag, _, ilen, value = self.header(pos, end, True)
            if tag == _SEQ_END:
                return value
            pos = self.item(pos, end, implicit, depth)

    def item(self, pos: int, end: int, implicit: bool, depth: int) -> int:
        tag, _, length, value = self.header(pos, end, True)
        if tag != _ITEM:
            raise StructureError(f"expected an item tag at byte {pos}, found {_tag_str(tag)}")
        if length == UNDEFINED:
            return self.dataset(value, end, implicit, depth, until_item_end=True)
        stop = value + length
        if stop > end:
            raise StructureError(f"item at byte {pos} needs {length} bytes (truncated)")
        self.dataset(value, stop, implicit, depth)
        return stop


def check_structure(buf: bytes, start: int, implicit: bool, little: bool) -> int:
    """Check the dataset that starts at ``start``; return the offset of its pixel data
    (or the end of the buffer).  Raises :class:`StructureError`."""
    scanner = _Scanner(buf, implicit, little)
    return scanner.dataset(start, len(buf), implicit, 0, stop_at_pixels=True)


def top_level_spans(buf: bytes, implicit: bool, little: bool) -> list[tuple[int, int, int]]:
    """(tag, start, end) of each top-level element of the dataset in ``buf`` (checked as
    :func:`check_structure` checks it)."""
    scanner = _Scanner(buf, implicit, little)
    spans = []
    pos = 0
    while pos < len(buf):
        tag, _, _, _ = scanner.header(pos, len(buf), implicit)
        end = scanner.dataset(pos, len(buf), implicit, 0, stop_after_one=True)
        spans.append((tag, pos, end))
        pos = end
    return spans


def meta_end(buf: bytes) -> int:
    """Offset just past the file meta group (explicit VR little endian, after ``DICM``)."""
    scanner = _Scanner(buf, False, True)
    pos = 132
    while pos + 8 <= len(buf):
        group = struct.unpack_from("<H", buf, pos)[0]
        if group != 0x0002:
            return pos
        _, vr, length, value = scanner.header(pos, len(buf), False)
        if length == UNDEFINED:
            raise StructureError("file meta element with undefined length")
        pos = value + length
        if pos > len(buf):
            raise StructureError("file meta information cut short (truncated file)")
    return pos
