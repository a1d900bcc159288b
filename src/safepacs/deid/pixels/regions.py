"""Regions cleaned whatever OCR reads there: known device layouts and ultrasound banners.

Device rules (``data/device_regions.json``) name a device by Modality, Manufacturer,
ManufacturerModelName, ImageType and Rows x Columns, as RSNA CTP's pixel signatures do, and
list boxes that device always fills with identity (a whole slide's LABEL image: all of it).

Ultrasound: the data regions of SequenceOfUltrasoundRegions hold the image; the banner
above them holds the patient, the site and the date.  The *top banner band* is every row
above the highest data region (rows 0 .. min RegionLocationMinY0 - 1), across the full
width, and it is always cleaned: nothing clinical is drawn there.  An ultrasound image
without that sequence gets the top :data:`US_FALLBACK_BAND` of its rows cleaned instead
(fail closed).  Regions to the sides of the data regions are left to OCR.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from pydicom import Dataset

from safepacs.deid.burnedin import image_kind

#: Fraction of rows cleaned at the top of an ultrasound image that does not describe its
#: data regions.
US_FALLBACK_BAND = 0.1


@dataclass(frozen=True)
class Region:
    """A box in full-resolution pixels and the rule that put it there."""

    x: int
    y: int
    w: int
    h: int
    rule: str


@lru_cache(maxsize=1)
def device_rules() -> tuple[dict, ...]:
    raw = resources.files("safepacs.deid.pixels").joinpath("data/device_regions.json")
    return tuple(json.loads(raw.read_text("utf-8"))["rules"])


def _text(header: Dataset, keyword: str) -> str:
    value = header.get(keyword, "")
    return str(value or "").strip().casefold()


def _has_word(words: str, text: str) -> bool:
    """``words`` occur in ``text`` as whole words ("ge" in "GE Healthcare", not "General")."""
    return re.search(rf"(?<![a-z0-9]){re.escape(words.casefold())}(?![a-z0-9])", text) is not None


def _matches(rule: dict, header: Dataset, rows: int, cols: int) -> bool:
    if rule.get("modality") and _text(header, "Modality") != rule["modality"].casefold():
        return False
    if rule.get("manufacturer") and not _has_word(rule["manufacturer"], _text(header, "Manufacturer")):
        return False
    if rule.get("model") and not _has_word(rule["model"], _text(header, "ManufacturerModelName")):
        return False
    if rule.get("image_type") and image_kind(header).casefold() != rule["image_type"].casefold():
        return False
    if rule.get("rows") and rule["rows"] != rows:
        return False
    return not (rule.get("columns") and rule["columns"] != cols)


def _clip(x: float, y: float, w: float, h: float, rows: int, cols: int, rule: str) -> Region | None:
    x0, y0 = max(0, int(x)), max(0, int(y))
    x1, y1 = min(cols, int(round(x + w))), min(rows, int(round(y + h)))
    if x1 <= x0 or y1 <= y0:
        return None
    return Region(x0, y0, x1 - x0, y1 - y0, rule)


def device_regions(header: Dataset, rows: int, cols: int) -> list[Region]:
    """Boxes of every device rule that matches this header and matrix."""
    out = []
    for rule in device_rules():
        if not _matches(rule, header, rows, cols):
            continue
        for x, y, w, h in rule["boxes"]:
            if rule.get("unit") == "fraction":
                x, y, w, h = x * cols, y * rows, w * cols, h * rows
            region = _clip(x, y, w, h, rows, cols, "device-region")
            if region:
                out.append(region)
    return out


def _int(item: Dataset, keyword: str) -> int | None:
    try:
        return int(item.get(keyword))
    except (TypeError, ValueError):
        return None


def ultrasound_regions(header: Dataset, rows: int, cols: int) -> list[Region]:
    """The top banner band of an ultrasound image (see the module docstring)."""
    regions = header.get("SequenceOfUltrasoundRegions")
    modality = _text(header, "Modality")
    if not regions:
        if modality != "us":
            return []
        band = int(round(rows * US_FALLBACK_BAND))
        region = _clip(0, 0, cols, band, rows, cols, "us-region")
        return [region] if region else []
    tops = [_int(item, "RegionLocationMinY0") for item in regions]
    tops = [t for t in tops if t is not None and t >= 0]
    if not tops:
        band = int(round(rows * US_FALLBACK_BAND))
    else:
        band = min(tops)
    region = _clip(0, 0, cols, band, rows, cols, "us-region")
    return [region] if region else []


def fixed_regions(header: Dataset, rows: int, cols: int) -> list[Region]:
    """Device and ultrasound regions of one frame of this header."""
    return device_regions(header, rows, cols) + ultrasound_regions(header, rows, cols)
