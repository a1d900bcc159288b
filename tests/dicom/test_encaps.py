"""Basic Offset Tables that cannot be right are read as if they were empty."""

from __future__ import annotations

import struct

from safepacs.dicom.encaps import without_unusable_offsets

ITEM = b"\xfe\xff\x00\xe0"


def encapsulated(offsets: list[int], fragments: list[bytes]) -> bytes:
    table = struct.pack(f"<{len(offsets)}L", *offsets)
    items = b"".join(ITEM + struct.pack("<L", len(f)) + f for f in fragments)
    return ITEM + struct.pack("<L", len(table)) + table + items


FRAGMENTS = [b"\xff\xd8" + b"a" * 8 + b"\xff\xd9", b"\xff\xd8" + b"b" * 20 + b"\xff\xd9"]


def test_a_table_that_fits_or_is_empty_is_kept():
    assert without_unusable_offsets(encapsulated([0, 20], FRAGMENTS), 2) is None
    assert without_unusable_offsets(encapsulated([], FRAGMENTS), 2) is None


def test_a_table_with_an_offset_per_frame_plus_the_end_is_emptied():
    """GDCM's example 00191113.dcm: five offsets for four frames, each off by a few bytes."""
    data = encapsulated([0, 21, 55], FRAGMENTS)
    fixed = without_unusable_offsets(data, 2)
    assert fixed == encapsulated([], FRAGMENTS)


def test_an_offset_that_points_inside_a_fragment_empties_the_table():
    assert without_unusable_offsets(encapsulated([0, 21], FRAGMENTS), 2) == encapsulated([], FRAGMENTS)
    assert without_unusable_offsets(encapsulated([20, 0], FRAGMENTS), 2) == encapsulated([], FRAGMENTS)


def test_broken_items_are_left_to_the_decoders():
    assert without_unusable_offsets(b"\x00" * 16, 1) is None
    assert without_unusable_offsets(encapsulated([0, 21], FRAGMENTS)[:-40], 2) is None
