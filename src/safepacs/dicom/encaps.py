"""Encapsulated pixel data whose Basic Offset Table cannot be right.

A Basic Offset Table holds one offset per frame, the first 0, each the position of a frame's
first fragment item counted from the first fragment (PS3.5 A.4).  Some writers get it wrong
(a real multi-frame JPEG Lossless file of GDCM's examples has five offsets for four frames,
each off by a few bytes); pydicom trusts a table that is present, so such an image could
be neither decoded nor split into frames, though its fragments are whole.  DCMTK ignores
such a table, and so does this: the data is read as if the table were empty, which pydicom
reads by its fragments (one per frame, or split at JPEG markers).
"""

from __future__ import annotations

import struct

_ITEM = b"\xfe\xff\x00\xe0"
_EMPTY_TABLE = _ITEM + b"\x00\x00\x00\x00"


def without_unusable_offsets(data: bytes, frames: int) -> bytes | None:
    """``data`` (encapsulated Pixel Data, little endian) with an empty Basic Offset Table
    when its table does not fit its fragments; None when the table is empty or fits, or
    when the item structure itself is broken (the decoders then say so)."""
    if len(data) < 8 or data[:4] != _ITEM:
        return None
    (length,) = struct.unpack_from("<L", data, 4)
    if length == 0 or length % 4 or 8 + length > len(data):
        return None
    offsets = list(struct.unpack_from(f"<{length // 4}L", data, 8))
    starts = _fragment_starts(data, 8 + length)
    if starts is None:
        return None
    if len(offsets) == frames and offsets[0] == 0 and set(offsets) <= starts and offsets == sorted(offsets):
        return None
    return _EMPTY_TABLE + data[8 + length :]


def _fragment_starts(data: bytes, first: int) -> set[int] | None:
    """Where each fragment item starts, counted from the first one; None if the items do
    not parse."""
    starts, pos = set(), first
    while pos + 8 <= len(data) and data[pos : pos + 4] == _ITEM:
        (length,) = struct.unpack_from("<L", data, pos + 4)
        starts.add(pos - first)
        pos += 8 + length
    if pos > len(data) or not starts:
        return None
    return starts
