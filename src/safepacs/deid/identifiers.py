"""The identifying values of one DICOM object, gathered once and searched for everywhere.

Cleaning free text (Clean Descriptors / Clean Structured Content) and verifying a
de-identified copy both ask the same question: which values in this file point at a
person?  The answer comes from the Annex E table (:mod:`safepacs.deid.profile`), not from a
hand-kept list: an attribute the table removes, replaces or cleans plays an identifying
role; one it does not list is kept and so is, by the standard's judgement, not identifying.
Issuers ("Issuer of Patient ID", and the issuer sequences the table does not list) name an
assigning authority, not a person: they are institution values, kept or sought as the
institution's name is.

Pure: no files, no clock.  Values found here are PHI; never put them in messages or logs.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, replace
from itertools import permutations

from pydicom import Dataset
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue

from safepacs.deid.policy import load_policy, safe_private_tags
from safepacs.deid.profile import Profile, Row, load_profile
from safepacs.dicom.io import read_value

#: The kinds of identifying value, one frozenset each in :class:`Identifiers`.
KINDS: tuple[str, ...] = (
    "name",
    "id",
    "date",
    "birth_date",
    "address",
    "phone",
    "email",
    "institution",
    "device",
    "uid",
    "other_text",
    "patient_characteristic",
)
#: Pseudo-kinds :func:`iter_values` also reports: whole free-text values (comments,
#: descriptions, SR text), private values, and values of attributes that do not identify.
FREE_TEXT = "free_text"
PRIVATE = "private"
NON_IDENTIFYING = "non_identifying"

#: Annex E options under which a kind of value may legitimately stay in the output.
KIND_WAIVERS: dict[str, frozenset[str]] = {
    "date": frozenset({"retain_long_full_dates"}),
    "device": frozenset({"retain_device_identity"}),
    "institution": frozenset({"retain_institution_identity"}),
    "patient_characteristic": frozenset({"retain_patient_characteristics"}),
    "uid": frozenset({"retain_uids"}),
}
# Options whose "C" means "keep the text, cleaned": the whole value may then remain.
_CLEANING_OPTIONS = frozenset(
    {"clean_descriptors", "clean_structured_content", "clean_graphics",
     "retain_patient_characteristics"}
)

#: Placeholder and generic values that identify nobody (compared after :func:`normalize`).
GENERIC_VALUES: frozenset[str] = frozenset(
    {
        "anonymous", "anon", "anonymized", "anonymised", "deidentified", "removed",
        "unknown", "none", "null", "na", "test", "other", "yes", "no", "patient",
        "noname", "redacted", "dummy", "empty", "unspecified",
    }
)

TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
     "UI", "UR", "UT"}
)
_DATE_OPTIONS = frozenset({"retain_long_full_dates", "retain_long_modified_dates"})
_NUMERIC_TEXT_VRS = frozenset({"DS", "IS"})
_FREE_TEXT_VRS = frozenset({"LT", "ST", "UT"})
# Coded-entry attributes: a concept (diagnosis, procedure) unless it codes a person,
# an institution or a device.
_CODE_KEYWORDS = frozenset({"CodeValue", "CodeMeaning", "LongCodeValue", "URNCodeValue"})
_STRUCTURAL_KEYWORDS = frozenset(
    {
        "CodingSchemeDesignator", "CodingSchemeVersion", "ContextIdentifier", "ContextUID",
        "MappingResource", "MappingResourceUID", "MappingResourceName", "ContextGroupVersion",
        "ContextGroupLocalVersion", "ContextGroupExtensionFlag", "TemplateIdentifier",
        "ValueType", "RelationshipType", "ContinuityOfContent", "SpecificCharacterSet",
    }
)
_CODE_INHERITING_KINDS = frozenset({"id", "institution", "device"})
_MAX_UN_BYTES = 16384

_FREE_TEXT_NAME = re.compile(
    r"Descri|Comment|History|Notes?\b|Narrative|Reason|Impression|Text|Keywords|Title"
    r"|Subject|Label|Alerts|Allerg|Diagnos|Arbitrary"
)
_PHONE_NAME = re.compile(r"Telephone|Telecom|Phone")
_ADDRESS_NAME = re.compile(r"Address|Residence|Location")
_ID_NAME = re.compile(
    r"\bIDs?\b|Identifier|Identification|Number|Locator|Barcode|Accession|\bUID\b"
)
#: "Issuer of Patient ID", "Study ID Issuer", "Issuer of Accession Number Sequence": an
#: issuer names the assigning authority (a hospital, its RIS), not a person.
_ISSUER_NAME = re.compile(r"\bIssuer\b")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_ESCAPE = re.compile(r"\x1b[\x20-\x2f]+[\x30-\x7e]")
#: control characters (NUL padding, bytes a damaged file holds): they part a value's words
#: like a space, so that "1.2.826.0<BEL><NUL>680043..." yields the UID's digits, not needles
#: that hold control bytes and match only where the encodings' byte forms go wrong
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]+")
_SEPARATORS = frozenset(" \t\r\n\f\v,^._-/·、，\u3000")
_SEPARATOR_TABLE = {ord(c): None for c in _SEPARATORS}


def normalize(text: str) -> str:
    """The comparison key of a value: case-folded, separators dropped.

    "Zhang, Wei", "ZHANG^WEI" and "zhang wei" share a key, so one lookup answers for all
    the ways a value is written.
    """
    return unicodedata.normalize("NFC", text).casefold().translate(_SEPARATOR_TABLE)


def is_cjk(ch: str) -> bool:
    """CJK ideographs, kana and hangul: scripts where two characters make a full name."""
    o = ord(ch)
    return (
        0x3400 <= o <= 0x4DBF
        or 0x4E00 <= o <= 0x9FFF
        or 0xF900 <= o <= 0xFAFF
        or 0x3040 <= o <= 0x30FF
        or 0xAC00 <= o <= 0xD7AF
        or 0x20000 <= o <= 0x2EBEF
    )


def is_significant(text: str) -> bool:
    """Whether a value is specific enough to identify: too short or generic values are not.

    ASCII needs 3 letters or digits, a number 4 digits; two CJK characters are a name.
    """
    s = text.strip()
    if not s or normalize(s) in GENERIC_VALUES:
        return False
    if sum(is_cjk(c) for c in s) >= 2:
        return True
    alnum = [c for c in s if c.isalnum()]
    if all(c.isdigit() for c in alnum):
        return len(alnum) >= 4
    return len(alnum) >= 3


@dataclass(frozen=True)
class Value:
    """One textual value of a dataset and the role its attribute plays.

    ``waivers`` are the Annex E options under which this value may legitimately remain in
    a de-identified copy (e.g. Retain Device Identity for a StationName).
    """

    kind: str
    text: str
    vr: str
    keyword: str
    waivers: frozenset[str] = frozenset()
    #: where the value was held: the tags from the top level down to its attribute
    #: (sequence items not counted), to compare with the same attribute of another file
    path: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Context:
    """The nearest enclosing sequence that plays an identifying role."""

    kind: str
    waivers: frozenset[str]
    concept_codes: bool  # codes inside describe concepts, not persons


_PRIVATE_CONTEXT = _Context(PRIVATE, frozenset(), concept_codes=True)
#: Items of an issuer sequence the table does not list (Issuer of Accession Number
#: Sequence, Issuer of Patient ID Qualifiers Sequence): they name an institution.
_ISSUER_CONTEXT = _Context("institution", KIND_WAIVERS["institution"], concept_codes=False)
_SAFE_PRIVATE_WAIVER = frozenset({"retain_safe_private"})


# --------------------------------------------------------------------------- classification
def _classify(row: Row, vr: str) -> str | None:
    """The kind of an attribute the table lists, from its VR, options and name."""
    if vr == "PN":
        return "name"
    if vr in ("DA", "DT"):
        return "birth_date" if "Birth" in row.name else "date"
    if vr == "TM":
        return None
    if vr == "UI":
        return "uid"
    opts = row.options
    if opts and set(opts) <= _DATE_OPTIONS:
        return None  # not a date, yet kept with dates: a UTC offset, shared by a whole region
    if "retain_device_identity" in opts:
        return "device"
    if "retain_institution_identity" in opts:
        return "institution"
    if opts.get("retain_patient_characteristics") == "K":
        return "patient_characteristic"
    if vr == "CS":
        return None  # defined terms (e.g. Instance Origin Status) identify nobody
    if _ISSUER_NAME.search(row.name):
        return "institution"  # an assigning authority: kept where the institution may be
    if _PHONE_NAME.search(row.name):
        return "phone"
    if _ADDRESS_NAME.search(row.name):
        return "address"
    cleaned = any(opts.get(o) == "C" for o in _CLEANING_OPTIONS)
    if vr in _FREE_TEXT_VRS or cleaned or _FREE_TEXT_NAME.search(row.name):
        return FREE_TEXT
    if _ID_NAME.search(row.name):
        return "id"
    return "other_text"


def _waivers(kind: str, row: Row) -> frozenset[str]:
    kept = {o for o, a in row.options.items() if a == "K"}
    if kind == FREE_TEXT:
        kept |= {o for o, a in row.options.items() if a == "C"}
    return KIND_WAIVERS.get(kind, frozenset()) | kept


def _identifying(row: Row | None) -> bool:
    return row is not None and row.basic != "K"


def _sequence_context(row: Row, name: str, parent: _Context | None) -> _Context | None:
    """Context for items of a listed sequence; UID-reference sequences carry no identity."""
    if "retain_uids" in row.options:
        return parent
    kind = _classify(row, "SQ") or "other_text"
    concept = kind not in _CODE_INHERITING_KINDS or "Type" in name
    return _Context(kind, _waivers(kind, row), concept)


def _inherited_kind(elem: DataElement, ctx: _Context) -> str | None:
    """The kind of an unlisted attribute inside an identifying sequence."""
    vr, keyword = elem.VR, elem.keyword
    if vr in ("UI", "TM") or (vr in _NUMERIC_TEXT_VRS and ctx.kind != PRIVATE):
        return None
    if vr == "CS" or keyword in _STRUCTURAL_KEYWORDS:
        return NON_IDENTIFYING
    if keyword in _CODE_KEYWORDS and ctx.concept_codes and ctx.kind != PRIVATE:
        return NON_IDENTIFYING
    return ctx.kind


def _element_kind(
    elem: DataElement, row: Row | None, ctx: _Context | None
) -> tuple[str, frozenset[str]] | None:
    """(kind, waivers) for one non-sequence element, or None when it is not searched."""
    vr = elem.VR
    if _identifying(row):
        assert row is not None
        kind = _classify(row, vr)
        return (kind, _waivers(kind, row)) if kind else None
    if vr == "PN":
        return "name", frozenset()
    if vr in ("DA", "DT"):
        kind = "birth_date" if "Birth" in elem.keyword else "date"
        return kind, KIND_WAIVERS.get(kind, frozenset())
    if ctx is None:
        if vr in TEXT_VRS - _NUMERIC_TEXT_VRS - {"UI", "TM"}:
            return NON_IDENTIFYING, frozenset()
        return None
    kind = _inherited_kind(elem, ctx)
    if kind is None:
        return None
    return kind, ctx.waivers | KIND_WAIVERS.get(kind, frozenset())


# --------------------------------------------------------------------------- decoding
def dataset_encodings(ds: Dataset, default: list[str] | None = None) -> list[str]:
    """Python codecs for a dataset's SpecificCharacterSet (the parent's when absent)."""
    raw = ds.get("SpecificCharacterSet")
    if raw is None:
        return default or ["iso8859"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return list(convert_encodings(raw))
        except (LookupError, ValueError, TypeError):
            return default or ["iso8859"]


def decode_un(value: bytes, encodings: list[str]) -> str | None:
    """Text hidden in an UN (or unknown private) value, or None when it is binary."""
    if not value or len(value) > _MAX_UN_BYTES:
        return None
    data = value.rstrip(b"\x00 ")
    text: str | None = None
    if b"\x1b" in data:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                text = decode_bytes(data, encodings, set())
            except (LookupError, ValueError, UnicodeError):
                text = None
    else:
        for codec in [*encodings, "utf-8"]:
            try:
                text = data.decode(codec)
                break
            except (LookupError, UnicodeDecodeError):
                continue
    text = strip_escapes(text) if text else None
    if not text or "\ufffd" in text:
        return None
    if not all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return None
    return text


def element_texts(elem: DataElement, encodings: list[str]) -> list[str]:
    """The string values of a textual or UN element, one per value multiplicity."""
    value = elem.value
    if value is None or value == "":
        return []
    if elem.VR in ("UN", "OB") or isinstance(value, bytes | bytearray):
        if not isinstance(value, bytes | bytearray):
            return []
        text = decode_un(bytes(value), encodings)
        text = _CONTROLS.sub(" ", text) if text else text
        return [t.strip() for t in text.split("\\") if t.strip()] if text else []
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    out = []
    for item in items:
        if item is None:
            continue
        s = _CONTROLS.sub(" ", strip_escapes(str(item))).strip()
        if s:
            out.append(s)
    return out


def strip_escapes(text: str) -> str:
    """Text without ISO 2022 escape sequences, which pydicom leaves in for some G1 sets
    (e.g. "\\x1b$)A周" for ISO 2022 IR 58): the reader sees "周"."""
    return _ESCAPE.sub("", text) if "\x1b" in text else text


# --------------------------------------------------------------------------- walking
def iter_values(ds: Dataset, profile: Profile | None = None) -> Iterator[Value]:
    """Every textual value of ``ds`` at every depth (file meta and sequences included).

    Each is labelled with a kind from :data:`KINDS`, or :data:`FREE_TEXT`,
    :data:`PRIVATE` or :data:`NON_IDENTIFYING`.  Times (TM) and binary values are skipped.
    """
    profile = profile or load_profile()
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from _walk(meta, profile, None, ["iso8859"])
    yield from _walk(ds, profile, None, dataset_encodings(ds))


def _walk(
    ds: Dataset, profile: Profile, ctx: _Context | None, encodings: list[str],
    trail: tuple[int, ...] = (),
) -> Iterator[Value]:
    encodings = dataset_encodings(ds, encodings) if "SpecificCharacterSet" in ds else encodings
    safe: set[int] | None = None
    for tag in list(ds.keys()):
        try:
            elem = read_value(ds, tag)
        except Exception:  # noqa: BLE001 - malformed: searched for as the bytes it holds
            elem = _undecoded(ds, tag)
            if elem is None:
                continue
        here = (*trail, int(elem.tag))
        if elem.tag.is_private:
            if safe is None:
                safe = safe_private_tags(ds, load_policy())
            yield from _private_values(elem, profile, encodings, here, safe=int(elem.tag) in safe)
            continue
        row = profile.row_for(int(elem.tag))
        if elem.VR == "SQ":
            if row is not None:
                inner = _sequence_context(row, row.name, ctx) if _identifying(row) else ctx
            elif (ctx is None or ctx.kind != PRIVATE) and _ISSUER_NAME.search(elem.name):
                inner = _ISSUER_CONTEXT
            else:
                inner = ctx
            for item in elem.value or []:
                yield from _walk(item, profile, inner, encodings, here)
            continue
        if elem.VR not in TEXT_VRS and elem.VR != "UN":
            continue
        labelled = _element_kind(elem, row, ctx)
        if labelled is None:
            continue
        kind, waivers = labelled
        for text in element_texts(elem, encodings):
            yield Value(kind, text, elem.VR, elem.keyword, waivers, here)


def _undecoded(ds: Dataset, tag: int) -> DataElement | None:
    """An element pydicom cannot decode (a VR spelled wrong, a length that does not fit the
    VR), as its bytes under the dictionary's VR: a PatientID whose VR was damaged still
    holds the ID, and its text is found as an UN value's would be.  None when nothing is
    there."""
    raw = ds._dict.get(tag)  # as read: get_item would try to decode a sequence again
    value = getattr(raw, "value", None)
    if not isinstance(value, bytes | bytearray) or not value:
        return None
    elem = DataElement(tag, "UN", bytes(value))
    try:
        vr = dictionary_VR(tag)
    except KeyError:  # private or unknown: read as UN
        return elem
    if len(vr) == 2 and vr != "SQ":  # not "US or SS" and the like: those carry no text
        elem.VR = vr
    return elem


def _private_values(elem: DataElement, profile: Profile, encodings: list[str],
                    here: tuple[int, ...], *, safe: bool = False) -> Iterator[Value]:
    """Private values: creators identify a vendor, everything else is a private value.
    One on the reviewed safe private list may remain under Retain Safe Private."""
    if elem.tag.is_private_creator:
        for text in element_texts(elem, encodings):
            yield Value(NON_IDENTIFYING, text, elem.VR, "", frozenset(), here)
        return
    if elem.VR == "SQ":
        for item in elem.value or []:
            yield from _walk(item, profile, _PRIVATE_CONTEXT, encodings, here)
        return
    if elem.VR in ("UI", "TM", "CS") or (elem.VR not in TEXT_VRS and elem.VR not in ("UN", "OB")):
        return
    kind = "name" if elem.VR == "PN" else PRIVATE
    waivers = _SAFE_PRIVATE_WAIVER if safe and kind == PRIVATE else frozenset()
    for text in element_texts(elem, encodings):
        yield Value(kind, text, elem.VR, "", waivers, here)


# --------------------------------------------------------------------------- forms
def _date_part(text: str, vr: str) -> str | None:
    digits = text[:10].replace(".", "").replace("-", "") if vr == "DA" else text[:8]
    if len(digits) < 8 or not digits[:8].isascii() or not digits[:8].isdigit():
        return None
    digits = digits[:8]
    try:
        _dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None
    return digits


def _name_forms(full: str) -> Iterator[str]:
    """The full PN value, each component group, and family/given/middle components."""
    yield full
    for group in full.split("="):
        if is_significant(group.replace("^", " ")):
            yield group.strip("^ ")
        for comp in group.split("^")[:3]:
            if is_significant(comp):
                yield comp.strip()


def identifying_forms(value: Value) -> Iterator[tuple[str, str]]:
    """(kind, text) pairs an identifying value contributes to :class:`Identifiers`."""
    kind, text = value.kind, value.text.strip()
    if kind not in KINDS or not text:
        return
    if kind == "name":
        for form in _name_forms(text):
            yield "name", form
    elif kind in ("date", "birth_date"):
        day = _date_part(text, value.vr if value.vr in ("DA", "DT") else "DA")
        if day:
            yield kind, day
    elif kind == "uid":
        if len(text) >= 8:
            yield "uid", text
    else:
        emails = _EMAIL.findall(text)
        for email in emails:
            yield "email", email
        if emails and kind == "phone":
            return
        if is_significant(text):
            yield kind, text


# --------------------------------------------------------------------------- needles
@dataclass(frozen=True)
class Needle:
    """One searchable form of an identifying value.

    ``parts`` match in order with any separators (space, ``^``, comma, dot, dash) or none
    between them, and in any letter case: ("ZHANG", "WEI") finds "Zhang Wei", "zhang,wei"
    and "ZHANGWEI".
    """

    parts: tuple[str, ...]
    kind: str

    @property
    def text(self) -> str:
        return " ".join(self.parts)

    @property
    def key(self) -> str:
        return normalize("".join(self.parts))


def date_variants(yyyymmdd: str) -> tuple[str, ...]:
    """The common written forms of a date, for searching free text.

    YYYYMMDD, YYYY-MM-DD, YYYY/MM/DD, YYYY.MM.DD, DD.MM.YYYY, MM.DD.YYYY, DD/MM/YYYY,
    MM/DD/YYYY (and dashes), YYYY年M月D日; each with and without zero padding.
    """
    y, m, d = yyyymmdd[:4], yyyymmdd[4:6], yyyymmdd[6:8]
    mi, di = str(int(m)), str(int(d))
    forms = {yyyymmdd, f"{y}年{m}月{d}日", f"{y}年{mi}月{di}日"}
    for sep in "-/.":
        for mm, dd in ((m, d), (mi, di)):
            forms |= {f"{y}{sep}{mm}{sep}{dd}", f"{dd}{sep}{mm}{sep}{y}", f"{mm}{sep}{dd}{sep}{y}"}
    return tuple(sorted(forms))


def _split_words(parts: Iterable[str]) -> tuple[str, ...]:
    return tuple(w for p in parts for w in p.split())


def _name_needles(text: str) -> list[Needle]:
    if "=" in text:
        return []  # a multi-group value: its groups are needles of their own
    comps = [c.strip() for c in text.split("^")[:3] if c.strip()]
    orders = {_split_words(p) for p in permutations(comps)}
    if len(comps) == 3:  # family and given without the middle name, either order
        orders |= {_split_words(comps[:2]), _split_words(comps[1::-1])}
    return [Needle(o, "name") for o in orders if o and is_significant("".join(o))]


def _phone_needles(text: str) -> list[Needle]:
    forms = {text}
    digits = "".join(c for c in text if c.isdigit())
    if len(digits) >= 7:
        forms.add(digits)
        for cc in ("0086", "86", "1"):
            if digits.startswith(cc) and len(digits) - len(cc) >= 7:
                forms.add(digits[len(cc):])
    return [Needle((f,), "phone") for f in forms]


def needles_for(kind: str, text: str) -> list[Needle]:
    """The searchable forms of one stored identifying value of ``kind``."""
    text = text.strip()
    if not text:
        return []
    if kind == "name":
        return _name_needles(text)
    if kind in ("date", "birth_date"):
        return [Needle((v,), kind) for v in date_variants(text)]
    if kind == "phone":
        return _phone_needles(text)
    return [Needle((text,), kind)]


# --------------------------------------------------------------------------- Identifiers
@dataclass(frozen=True)
class Identifiers:
    """The identifying values of one (or several) DICOM objects, one set per kind.

    Hashable, so compiled search patterns can be cached per instance.
    """

    name: frozenset[str] = frozenset()
    id: frozenset[str] = frozenset()
    date: frozenset[str] = frozenset()
    birth_date: frozenset[str] = frozenset()
    address: frozenset[str] = frozenset()
    phone: frozenset[str] = frozenset()
    email: frozenset[str] = frozenset()
    institution: frozenset[str] = frozenset()
    device: frozenset[str] = frozenset()
    uid: frozenset[str] = frozenset()
    other_text: frozenset[str] = frozenset()
    patient_characteristic: frozenset[str] = frozenset()

    @classmethod
    def from_values(cls, values: Iterable[Value]) -> Identifiers:
        """Gather the identifying forms of classified values (see :func:`iter_values`)."""
        sets: dict[str, set[str]] = {k: set() for k in KINDS}
        for value in values:
            for kind, text in identifying_forms(value):
                sets[kind].add(text)
        return cls(**{k: frozenset(v) for k, v in sets.items()})

    def with_private_text(self, ds: Dataset) -> Identifiers:
        """Add the text of private elements (any depth) as ``other_text``.

        Vendors copy names, IDs and addresses into private elements; when free text is
        kept (Clean Descriptors), anything a private element says is treated as identity
        and scrubbed from the kept text: fail closed.
        """
        found: set[str] = set()

        def walk(node: Dataset, encodings: list[str]) -> None:
            for tag in list(node.keys()):
                elem = read_value(node, tag)
                if elem.VR == "SQ":
                    for item in elem.value:
                        walk(item, encodings)
                elif elem.tag.group & 1 and elem.tag.element >= 0x1000:
                    if isinstance(elem.value, bytes):
                        text = decode_un(elem.value, encodings)
                    else:
                        text = str(elem.value) if isinstance(elem.value, str) else None
                    for part in re.split(r"[\r\n;=\\]+", text or ""):
                        part = part.strip()
                        if len(part) >= 6 or (len(part) >= 2 and not part.isascii()):
                            found.add(part)

        walk(ds, dataset_encodings(ds))
        return Identifiers(**{k: getattr(self, k) | (frozenset(found) if k == "other_text" else frozenset())
                              for k in KINDS})

    def union(self, other: Identifiers) -> Identifiers:
        """Both objects' identifiers: for a study or a patient searched as one."""
        return Identifiers(**{k: getattr(self, k) | getattr(other, k) for k in KINDS})

    def without(self, *kinds: str) -> Identifiers:
        """A copy without ``kinds``: e.g. dates, when an option retains them."""
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown identifier kinds: {sorted(unknown)}")
        return replace(self, **{k: frozenset() for k in kinds})

    def items(self) -> Iterator[tuple[str, str]]:
        """(kind, value) for every stored value."""
        for f in fields(self):
            for text in sorted(getattr(self, f.name)):
                yield f.name, text

    def __bool__(self) -> bool:
        return any(getattr(self, k) for k in KINDS)

    def needles(self, kinds: Iterable[str] | None = None) -> tuple[Needle, ...]:
        """Searchable forms of every value (of ``kinds``), longest first, deduplicated."""
        wanted = set(KINDS if kinds is None else kinds)
        seen: dict[tuple[tuple[str, ...], str], Needle] = {}
        for kind, text in self.items():
            if kind in wanted:
                for needle in needles_for(kind, text):
                    seen.setdefault((needle.parts, needle.kind), needle)
        return tuple(sorted(seen.values(), key=lambda n: (-len(n.key), n.key, n.kind)))


def collect_identifiers(ds: Dataset) -> Identifiers:
    """Every identifying value of ``ds``: names, IDs, dates, addresses, phones, ... .

    Walks file meta and nested sequences; attribute roles come from the Annex E table.
    """
    return Identifiers.from_values(iter_values(ds))
