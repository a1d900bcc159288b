"""Reviewed site data beside the standard's table: the keep-list and the safe private list.

Both are data files inside the package (``deid/data``) so that a reviewer changes a list,
not code, and every decision is visible in one place.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from safepacs.dicom.io import read_value


@dataclass(frozen=True)
class SafeElement:
    """One safe private element: the VRs it may be written with, and for a text VR that
    can spell a word (CS, SH, LO...) the form every value must have."""

    vrs: frozenset[str]
    form: re.Pattern[str] | None = None


@dataclass(frozen=True)
class SafePrivate:
    """Safe private elements of one private creator: element offset -> what is allowed."""

    group: int
    elements: dict[int, SafeElement]


#: PS3.5 6.2: what a decimal or integer string may hold (no letter but an exponent's E)
_NUMBER_TEXT = re.compile(r" *[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)? *")
_NUMBER_VRS = frozenset({"DS", "IS"})
#: binary numbers: struct format of one value
_BINARY = {"FD": "d", "FL": "f", "SS": "h", "US": "H", "SL": "i", "UL": "I", "SV": "q", "UV": "Q"}
#: four letters in a row: a word, not the bytes of a number (one in tens of thousands of
#: real floats looks so, and is then removed: fail closed)
_WORD = re.compile(rb"[A-Za-z]{4}")


@dataclass(frozen=True)
class Policy:
    keep_tags: frozenset[int]
    binary_keep_tags: frozenset[int]
    binary_keep_groups: frozenset[int]
    safe_private: dict[str, SafePrivate]  # creator (stripped, upper case) -> entries
    standard_schemes: frozenset[str] = frozenset()
    free_text_tags: frozenset[int] = frozenset()
    #: unlisted text that the IOD requires: replaced by a dummy (Type 1) or emptied (Type 2)
    dummy_tags: frozenset[int] = frozenset()
    empty_tags: frozenset[int] = frozenset()
    #: unlisted labels and descriptions of the content: cleaned under Clean Descriptors
    descriptor_tags: frozenset[int] = frozenset()
    #: unlisted text whose values the standard defines: tag -> those values (lower case)
    defined_values: dict[int, frozenset[str]] = field(default_factory=dict)

    def has_defined_values(self, tag: int, values: list[str]) -> bool:
        """Every one of ``values`` (at least one) is a value the standard defines for ``tag``."""
        defined = self.defined_values.get(tag)
        return bool(defined and values) and all(v.strip().lower() in defined for v in values)

    def safe_private_element(self, creator: str, group: int, offset: int) -> SafeElement | None:
        entry = self.safe_private.get(creator.strip().upper())
        if entry is None or entry.group != group:
            return None
        return entry.elements.get(offset)


def _read(name: str) -> dict:
    text = resources.files("safepacs.deid").joinpath(f"data/{name}").read_text("utf-8")
    return json.loads(text)


def _tag(keyword: str, source: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"{source}: unknown keyword {keyword!r}")
    return tag


def _tags(keywords: list[str], source: str) -> frozenset[int]:
    return frozenset(_tag(kw, source) for kw in keywords)


@lru_cache(maxsize=1)
def load_policy() -> Policy:
    keep = _read("keep_list.json")
    private = _read("safe_private.json")
    safe = {
        creator.strip().upper(): SafePrivate(
            int(spec["group"], 16),
            {int(off, 16): _safe_element(creator, e) for off, e in spec["elements"].items()},
        )
        for creator, spec in private["creators"].items()
    }
    return Policy(
        keep_tags=_tags(keep["keywords"], "keep_list.json"),
        binary_keep_tags=_tags(keep["binary_keywords"], "keep_list.json"),
        binary_keep_groups=frozenset(int(g, 16) for g in keep["binary_groups"]),
        safe_private=safe,
        standard_schemes=frozenset(s.upper() for s in keep["standard_coding_schemes"]),
        free_text_tags=_tags(keep["free_text_keywords"], "keep_list.json"),
        dummy_tags=_tags(keep["required_dummy_keywords"], "keep_list.json"),
        empty_tags=_tags(keep["required_empty_keywords"], "keep_list.json"),
        descriptor_tags=_tags(keep["descriptor_keywords"], "keep_list.json"),
        defined_values={
            _tag(kw, "keep_list.json"): frozenset(v.lower() for v in values)
            for kw, values in keep["defined_values"].items()
        },
    )


def _safe_element(creator: str, spec: dict) -> SafeElement:
    vrs = frozenset(spec["vr"])
    form = spec.get("form")
    if form is None and not vrs <= _NUMBER_VRS | _BINARY.keys():
        # a code or a short string can be a name: its values must be listed as a form
        raise ValueError(f"safe_private.json: {creator} {spec['name']}: text VR without a 'form'")
    return SafeElement(vrs, re.compile(form) if form is not None else None)


def _texts(value: object) -> list[object]:
    if isinstance(value, (list, tuple, MultiValue)):
        return list(value)
    if isinstance(value, str):
        return value.split("\\")
    return [value]


def value_fits(value: object, safe: SafeElement, vr: str = "UN") -> bool:
    """``value`` (read as ``vr``) has the form a safe private element's entry gives it, so
    no name, ID or date can hide in it: numbers for a number VR, the entry's ``form`` for
    text.  Bytes (an element read without its VR) are read as the entry's VR."""
    if value is None or value == b"" or value == "":
        return True
    if isinstance(value, bytes):
        binary = [code for v, code in _BINARY.items() if v in safe.vrs]
        if binary:
            return any(_binary_fits(value, code) for code in binary)
        try:
            value = value.decode("ascii").rstrip("\x00 ")
        except UnicodeDecodeError:
            return False
    code = _BINARY.get(vr)
    for item in _texts(value):
        if code is not None and isinstance(item, (int, float)) and not isinstance(item, bool):
            packed = struct.pack("<" + code, item)  # the bytes as written
            if _WORD.search(packed) or not math.isfinite(item):
                return False
            continue
        text = str(item)  # a decimal string's own text, an integer string's, a code
        if safe.form is not None:
            if not safe.form.fullmatch(text.strip(" ")):
                return False
        elif not _NUMBER_TEXT.fullmatch(text):
            return False
    return True


def _binary_fits(raw: bytes, code: str) -> bool:
    size = struct.calcsize(code)
    if len(raw) % size or _WORD.search(raw):
        return False
    values = struct.unpack(f"<{len(raw) // size}{code}", raw)
    return all(math.isfinite(v) for v in values)


def safe_private_tags(ds: Dataset, policy: Policy) -> set[int]:
    """Tags of ``ds`` (one level) on the safe private list: the listed elements, by their
    block's creator, group and offset, with an allowed VR (UN: read without VRs) and a
    value of the listed form, and their creators.  What Retain Safe Private keeps, and
    what verify-deid then expects."""
    keep: set[int] = set()
    creators: dict[tuple[int, int], str] = {}
    for elem in ds.elements():
        tag = BaseTag(elem.tag)
        if tag.group & 1 and 0x10 <= tag.element <= 0xFF:
            value = read_value(ds, tag).value
            if isinstance(value, str):
                creators[(tag.group, tag.element)] = value
    for elem in ds.elements():
        tag = BaseTag(elem.tag)
        if not tag.group & 1 or tag.element < 0x1000:
            continue
        creator = creators.get((tag.group, tag.element >> 8))
        if creator is None:
            continue
        safe = policy.safe_private_element(creator, tag.group, tag.element & 0xFF)
        vr = str(getattr(elem, "VR", None) or "UN")
        if safe is None or not (vr in safe.vrs or vr == "UN"):
            continue
        try:
            fits = value_fits(read_value(ds, tag).value, safe, vr)
        except Exception:  # noqa: BLE001 - a value that does not decode is not a known form
            fits = False
        if fits:
            keep.add(int(tag))
            keep.add((tag.group << 16) | (tag.element >> 8))
    return keep
