"""Find a planted location in a dataset and read its text as a conformant reader would.

Shared by the generator's own tests and by leak checks elsewhere: "is the planted
value still there?" needs the location resolved and the bytes decoded in the file's
character set, including ISO 2022 IR 58 which pydicom 3.0 does not decode correctly.
"""

from __future__ import annotations

import re

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from safepacs.synth import charsets
from safepacs.synth.charsets import Charset

_STEP = re.compile(r"^(?P<name>[A-Za-z0-9]+|\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\))(?:\[(?P<i>\d+)\])?$")


def _tag_of(name: str) -> int:
    if name.startswith("("):
        group, element = name[1:-1].split(",")
        return (int(group, 16) << 16) | int(element, 16)
    tag = tag_for_keyword(name)
    if tag is None:
        raise KeyError(f"not a DICOM keyword: {name}")
    return tag


def locate(ds: Dataset, location: str) -> DataElement | RawDataElement | None:
    """The element at an answer-key ``location`` ("A[0].B", "(0011,1012)"), or None."""
    steps = location.split(".")
    current = ds
    for n, step in enumerate(steps):
        m = _STEP.match(step)
        if m is None:
            raise ValueError(f"bad location step {step!r}")
        tag = _tag_of(m["name"])
        if tag not in current:
            return None
        if n == len(steps) - 1:
            return current.get_item(tag)
        items = current[tag].value
        index = int(m["i"] or 0)
        if index >= len(items):
            return None
        current = items[index]
    return None


def element_text(elem: DataElement | RawDataElement, charset: Charset) -> str:
    """The element's value as text: decoded in ``charset`` for text VRs and UN.

    Binary (OB) vendor blobs are read as Latin-1 so that embedded ASCII shows through.
    """
    vr = elem.VR
    if vr is None:  # raw element from an implicit VR file
        try:
            vr = dictionary_VR(elem.tag)
        except KeyError:
            vr = "UN"
    value = elem.value
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
        if vr in charsets.TEXT_VRS:
            return charsets.decode(raw, charset, vr)
        if vr == "UN":
            return charsets.decode(raw, charset, "LT")
        if vr in ("OB", "OW"):
            return raw.decode("latin-1")
        return raw.rstrip(b" \x00").decode("ascii")
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def holds(elem: DataElement | RawDataElement, charset: Charset, value: str, exact: bool) -> bool:
    """True if the element carries ``value``: as one of its values, or inside its text."""
    text = element_text(elem, charset)
    if not exact:
        return value in text
    return value == text or value in text.split("\\")
