"""Datasets as the DICOM JSON model (PS3.18 Annex F) for QIDO-RS results and WADO-RS metadata.

Top-level binary elements above a threshold become ``BulkDataURI`` links (served by the
``/bulkdata`` route); everything else is inline.  Pixel data is never inlined.
"""

from __future__ import annotations

import json
from typing import Any

from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
PIXEL_DATA = 0x7FE00010
BULK_THRESHOLD = 1024


def to_json(ds: Dataset, *, bulk_base: str | None = None) -> dict[str, Any]:
    """One dataset as a DICOM JSON object; ``bulk_base`` is the instance URL for bulk links."""
    out: dict[str, Any] = {}
    for elem in ds:  # top level; sequences recurse inside pydicom
        key = f"{int(elem.tag):08X}"
        if elem.VR in BULK_VRS and (int(elem.tag) == PIXEL_DATA or _length(elem) > BULK_THRESHOLD):
            if bulk_base is not None:
                out[key] = {"vr": elem.VR, "BulkDataURI": f"{bulk_base}/bulkdata/{key}"}
            continue
        out[key] = _element(elem)
    return out


def _element(elem: Any) -> dict[str, Any]:
    """pydicom's JSON for one element; where a value is not what its VR says (an IS of
    "1A" from some device), the element is built here instead: IS and DS values that are
    not numbers go as JSON strings (CP 1861 allows strings for both), sequences recurse."""
    try:
        return elem.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=BULK_THRESHOLD)
    except (ValueError, TypeError, OverflowError):
        pass
    vr = str(elem.VR)
    if vr == "SQ":
        return {"vr": vr, "Value": [{f"{int(e.tag):08X}": _element(e) for e in item} for item in elem.value or []]}
    if vr in ("IS", "DS"):
        values = elem.value if isinstance(elem.value, list | MultiValue) else [elem.value]
        return {"vr": vr, "Value": [_number_or_text(v) for v in values]}
    return {"vr": vr}  # a value that cannot be written in its VR is left out


def _number_or_text(value: Any) -> int | float | str | None:
    if value is None or value == "":
        return None
    text = str(value).strip()
    for kind in (int, float):
        try:
            number = kind(text)
        except (TypeError, ValueError, OverflowError):
            continue
        return number if number == number and abs(number) != float("inf") else text
    return text


def add_bulk_pixel_link(out: dict[str, Any], pixel: tuple[int, str] | None, bulk_base: str) -> None:
    """Metadata read without pixel data still advertises where the pixels are: ``pixel`` is
    the tag and VR of the object's pixel data element (``Archive.header``), None when it has
    none (a header-only object gets no link that would answer 404)."""
    if pixel is not None and f"{pixel[0]:08X}" not in out:
        key = f"{pixel[0]:08X}"
        out[key] = {"vr": pixel[1], "BulkDataURI": f"{bulk_base}/bulkdata/{key}"}


def dumps(objects: list[dict[str, Any]]) -> bytes:
    """UTF-8 JSON, non-ASCII kept as is (Chinese names must survive intact)."""
    return json.dumps(objects, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _length(elem) -> int:
    value = elem.value
    try:
        return len(value) if value is not None else 0
    except TypeError:
        return 0


def tag_key(tag: int) -> str:
    return f"{int(Tag(tag)):08X}"
