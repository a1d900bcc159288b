"""Value-level building blocks of the Annex E actions: dummy values and date shifting.

``D`` needs "a non-zero length value that may be a dummy value and consistent with the
VR"; these are the dummies.  They are fixed strings, so no dummy can echo an original.
"""

from __future__ import annotations

import datetime as _dt
import re

from pydicom.datadict import dictionary_VR

#: VRs whose values are numbers or codes: they cannot carry a name, an ID or free text.
#: "US or SS" is how an implicit VR file's palette descriptors and pixel value bounds read
#: (the dictionary's alternatives): numbers either way.
NUMERIC_VRS = frozenset(
    {"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "IS", "DS", "AT", "OF", "OD", "OL", "OV",
     "US or SS"}
)
#: VRs that can carry a name, identifier, date or free text.
TEXT_VRS = frozenset({"PN", "LO", "LT", "SH", "ST", "UT", "UC", "UR", "DA", "DT", "TM", "AS", "AE"})
BINARY_VRS = frozenset({"OB", "OW", "UN", "OB or OW", "US or OW", "US or SS or OW"})


def vr_of(elem: object) -> str:
    """The VR an element is decided by: as read, else the dictionary's (implicit VR), else
    UN (an unknown private tag)."""
    vr = getattr(elem, "VR", None)
    if vr:
        return str(vr)
    try:
        return dictionary_VR(elem.tag)  # type: ignore[attr-defined]
    except KeyError:
        return "UN"


def public_vr(tag: int) -> str | None:
    """The dictionary VR of a standard element written as UN (a converter that lost the VR),
    for deciding by what it holds; None for tags not in the dictionary and for sequences (UN
    bytes are not walked as items).  Of two VRs ("US or SS") the first: both alike here."""
    try:
        vr = dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return None
    return None if vr == "SQ" else vr


DUMMY_DATE = "19000101"
_DUMMIES: dict[str, object] = {
    "PN": "ANONYMIZED",
    "LO": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "UR": "urn:anonymized",
    "AE": "ANONYMIZED",
    "CS": "ANONYMIZED",
    "DA": DUMMY_DATE,
    "DT": DUMMY_DATE + "000000",
    "TM": "000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "UV": 0,
    "SV": 0,
    "FL": 0.0,
    "FD": 0.0,
    "AT": 0,
    "OB": b"\x00\x00",
    "OW": b"\x00\x00",
    "OD": b"\x00" * 8,
    "OF": b"\x00" * 4,
    "OL": b"\x00" * 4,
    "OV": b"\x00" * 8,
    "UN": b"\x00\x00",
}


def dummy_value(vr: str) -> object:
    """A fixed, non-identifying value valid for ``vr``."""
    return _DUMMIES.get(vr, _DUMMIES["UN"] if vr in BINARY_VRS else "ANONYMIZED")


def shift_date(value: str, days: int) -> str:
    """Move a DA value (``YYYYMMDD``) back by ``days``; an unparseable date becomes the dummy.

    Fail closed: a value we cannot parse might not be a date at all, so it is not kept.
    """
    value = value.strip()
    if not value:
        return value
    try:
        day = _dt.datetime.strptime(value[:8], "%Y%m%d").date()
    except ValueError:
        return DUMMY_DATE
    if len(value) not in (8,):
        return DUMMY_DATE
    try:
        return (day - _dt.timedelta(days=days)).strftime("%Y%m%d")
    except OverflowError:
        return DUMMY_DATE


_DT_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(.*)$")


def shift_datetime(value: str, days: int) -> str:
    """Move the date part of a DT value back by ``days``; time and offset are kept."""
    value = value.strip()
    if not value:
        return value
    m = _DT_RE.match(value)
    if not m or not m.group(2) or not m.group(3):
        # Year-only or year-month DT: too coarse to shift coherently; use the dummy.
        return _DUMMIES["DT"]  # type: ignore[return-value]
    rest = m.group(4)
    if rest and not re.fullmatch(r"[\d.]*([+-]\d{4})?", rest):
        return _DUMMIES["DT"]  # type: ignore[return-value]
    shifted = shift_date(value[:8], days)
    return shifted + rest if shifted != DUMMY_DATE else _DUMMIES["DT"]  # type: ignore[return-value]
