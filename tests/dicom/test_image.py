"""The one answer to 'where are the pixels, how many frames' that every layer uses."""

from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from safepacs.dicom.image import PIXEL_ELEMENTS, PIXEL_TAGS, frame_count, pixel_keyword


def test_the_pixel_table_matches_the_data_dictionary():
    for keyword, (tag, implicit_vr) in PIXEL_ELEMENTS.items():
        assert keyword_for_tag(tag) == keyword
        assert implicit_vr in dictionary_VR(tag).split(" or ")
        assert PIXEL_TAGS[tag] == implicit_vr
    assert len(PIXEL_TAGS) == 3


@pytest.mark.parametrize("keyword", ["PixelData", "FloatPixelData", "DoubleFloatPixelData"])
def test_each_pixel_element_is_found(keyword):
    ds = Dataset()
    ds.Rows = 1
    setattr(ds, keyword, b"\x00" * 8)
    assert pixel_keyword(ds) == keyword


def test_a_header_without_pixels_has_no_pixel_keyword():
    ds = Dataset()
    ds.Rows = 4
    assert pixel_keyword(ds) is None


@pytest.mark.parametrize(
    ("value", "count"), [(None, 1), ("", 1), ("0", 1), ("3", 3), ("12", 12), ("-2", None), ("1A", None)]
)
def test_frame_count_as_read(value, count):
    """Absent, empty or 0 count as one frame; a
    value that is no positive count is None, for the caller to refuse."""
    ds = Dataset()
    if value is not None:
        raw = value.encode() + b" " * (len(value) % 2)
        ds[0x00280008] = RawDataElement(Tag(0x00280008), "IS", len(raw), raw, 0, False, True)
    assert frame_count(ds) == count
