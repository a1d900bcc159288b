"""Which element holds an object's pixels, and how many frames it says it has.

The renderer, the pixel cleaner, WADO-RS framing and metadata, the C-GET/C-MOVE converter
and the header readers all ask this; one answer keeps them agreeing.  Pure functions on
a dataset, no pixel decoding.
"""

from __future__ import annotations

from pydicom import Dataset

#: the three elements that hold an image's pixels (PS3.3 C.7.6.3, C.7.6.24, C.7.6.25), by
#: keyword, with their tag and the VR each has in implicit VR (PS3.5 A.1: Pixel Data is OW).
#: A Parametric Map keeps its values in Float or Double Float Pixel Data, never Pixel Data.
PIXEL_ELEMENTS: dict[str, tuple[int, str]] = {
    "PixelData": (0x7FE00010, "OW"),
    "FloatPixelData": (0x7FE00008, "OF"),
    "DoubleFloatPixelData": (0x7FE00009, "OD"),
}
#: tag -> implicit VR of the same three elements
PIXEL_TAGS: dict[int, str] = dict(PIXEL_ELEMENTS.values())


def pixel_keyword(ds: Dataset) -> str | None:
    """Which of the pixel data elements ``ds`` has, or None."""
    return next((k for k in PIXEL_ELEMENTS if k in ds), None)


def frame_count(ds: Dataset) -> int | None:
    """NumberOfFrames as a count (1 when absent, empty or 0); None when it is not a count
    (seen in the wild: ``1A``), so that callers refuse rather than guess."""
    try:
        n = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return None
    return n if n >= 1 else None
