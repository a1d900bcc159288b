"""Header de-identification on the encoded bytes: the batch runner's common case.

The engine parses a header into a pydicom dataset, decides per element, records the
identity delta and encodes the result: about 2.5 ms a file, most of a run's CPU.  When a
run keeps no delta and cleans no pixels, this module rebuilds the header from the input's
bytes instead: every element gets the engine's own decision (:meth:`_Walker.decide`),
kept elements are copied as they lie, replaced ones are encoded here as the engine's
writer would encode them.

It answers None for anything it does not do exactly as the engine would (values whose
decoding depends on the character set, odd lengths, Clean actions, data after the pixels,
a header longer than the chunk read, any structural doubt), and the file then takes the
engine's path, which also gives the error a person reads.  The tests run both paths over
whole corpora and compare the bytes written.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import lru_cache

from pydicom import Dataset
from pydicom.charset import default_encoding, python_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.filebase import DicomBytesIO
from pydicom.tag import BaseTag
from pydicom.uid import UID

from safepacs.deid.actions import dummy_value
from safepacs.deid.burnedin import burned_in_risk
from safepacs.deid.engine import (
    _CODE_MEANING,
    _CODING_SCHEME,
    _PATIENT_ID,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    KEEP_AS_IS,
    _new,
    _Walker,
    mark_elements,
)
from safepacs.deid.keys import Keys
from safepacs.deid.options import Options
from safepacs.deid.policy import load_policy
from safepacs.deid.profile import load_profile
from safepacs.dicom.image import PIXEL_TAGS
from safepacs.dicom.io import _ITEM as _ITEM_HEAD
from safepacs.dicom.io import _ITEM_END as _ITEM_END_BYTES
from safepacs.dicom.io import _SEQUENCE_END as _SEQ_END_BYTES
from safepacs.dicom.io import _ascii_text, _element_header, _write_sequence
from safepacs.dicom.structure import (
    _ITEM,
    _ITEM_END,
    _LONG,
    _MAX_DEPTH,
    _SEQ_END,
    _VRS,
    UNDEFINED,
    _is_sq_implicit,
    _Scanner,
)

_PREAMBLE = b"\x00" * 128 + b"DICM"
_IMPLICIT = "1.2.840.10008.1.2"
#: elements the engine's path reads (and so re-encodes when it keeps them): the character
#: set, what the patient key and the output name are made of, the SOP class synced to meta
_ROOT_READ = frozenset({
    0x00080005, 0x00080016, 0x00080018, 0x00100020, 0x00100021, 0x0020000D, 0x0020000E,
})
_PATIENT_NAME = 0x00100010
_CHARSET = 0x00080005


class _Unsupported(Exception):
    """The engine's path handles this file."""


@dataclass(frozen=True)
class Header:
    """A de-identified header and where the input's pixel group lies."""

    data: bytes  #: preamble, file meta and dataset up to the pixel group
    pixel_start: int | None  #: None: the object has no pixel group (nothing to copy)
    implicit: bool  #: implicit VR little endian (else explicit VR little endian)
    patient_id: str  #: identifiers after de-identification, for the output's name
    study_uid: str
    series_uid: str
    sop_uid: str


@dataclass
class _Element:
    tag: int
    vr: bytes | None  # None in implicit VR
    value: int  # value offset
    length: int  # as encoded (UNDEFINED for undefined-length sequences)
    end: int  # just past the element (delimiters included)
    items: list[tuple[bool, list[_Element]]] | None = None  # (undefined length, elements)


def eligible(options: Options) -> bool:
    """The options whose every action this module performs (no Clean, no date shift, no
    safe-private selection, which depend on values beyond the element itself)."""
    return not (
        options.clean_descriptors or options.clean_structured_content or options.clean_graphics
        or options.retain_long_modified_dates or options.retain_safe_private
    )


class FastDeid:
    """De-identify encoded headers under one set of options and keys."""

    def __init__(self, options: Options, keys: Keys) -> None:
        if not eligible(options):
            raise ValueError("these options need the engine's path")
        self.options = options
        self.keys = keys
        # a walker over an empty dataset: only its decisions are used
        self.walker = _Walker(Dataset(), options, keys, load_profile(), load_policy())
        self._decisions: dict[tuple[int, str, str, bool], str] = {}
        self._implicit_vrs: dict[int, str] = {}

    def header(self, head: bytes, size: int) -> Header | None:
        """The de-identified header of the Part 10 object whose first bytes are ``head``
        (``size`` bytes in all), or None when the engine's path must handle it."""
        try:
            return self._header(memoryview(head), size)
        except Exception:  # noqa: BLE001 - any doubt: the engine's path decides and reports
            return None

    # --- parsing ------------------------------------------------------------------
    def _header(self, buf: memoryview, size: int) -> Header:
        if len(buf) < 132 or bytes(buf[128:132]) != b"DICM":
            raise _Unsupported
        meta, pos = _meta(buf)
        ts = _ui_text(meta[0x00020010][1])  # none: the engine's path says so
        implicit = ts == _IMPLICIT
        if not implicit:
            uid = UID(ts)
            if not uid.is_transfer_syntax or uid.is_deflated or not uid.is_little_endian:
                raise _Unsupported
        if pos + 6 <= len(buf) and (bytes(buf[pos + 4 : pos + 6]) in _VRS) == implicit:
            raise _Unsupported  # encoded otherwise than its meta says: pydicom decides
        whole = len(buf) == size
        elements, stop = _dataset(buf, pos, len(buf), implicit, 0, top=True)
        if stop == len(buf) and not whole:
            raise _Unsupported  # the header runs past the chunk read
        pixel_start = stop if stop < size else None
        if not any(e.tag in (0x00080016, 0x00080018) for e in elements):
            raise _Unsupported  # not an object: the engine's path says so
        return self._rebuild(buf, meta, elements, implicit, pixel_start)

    # --- rebuilding ---------------------------------------------------------------
    def _rebuild(self, buf: memoryview, meta: dict[int, tuple[bytes, memoryview]],
                 elements: list[_Element], implicit: bool, pixel_start: int | None) -> Header:
        options = self.options
        by_tag = {e.tag: e for e in elements}
        read = set(_ROOT_READ)
        pid = by_tag.get(_PATIENT_ID)
        if pid is None or _is_blank(buf, pid):
            read.add(_PATIENT_NAME)
        read |= self._risk_reads(buf, elements, implicit, pixel_start)
        if _CHARSET in by_tag:
            _check_charset(buf, by_tag[_CHARSET])
        body = self._dataset(buf, elements, implicit, "normal", read, 0)
        body.update(_marks(options, implicit))
        data = b"".join(body[t] for t in sorted(body))
        ids = _identifiers(body, implicit)
        # the meta's SOP class follows the dataset's as written (a non-standard one is
        # replaced there), or stays as it was when the dataset has none
        meta_bytes = self._meta(meta, ids[3], _encoded_text(body.get(0x00080016), implicit))
        return Header(_PREAMBLE + meta_bytes + data, pixel_start, implicit, *ids)

    def _risk_reads(self, buf: memoryview, elements: list[_Element], implicit: bool,
                    pixel_start: int | None) -> set[int]:
        """Where the engine's path runs its burned-in check, run it on the raw elements:
        a file it would clean or refuse is not for this path; otherwise, say which elements
        the check read (the engine's writer re-encodes those)."""
        options = self.options
        if pixel_start is None or (options.clean_pixels == "never" and options.accept_burned_in_risk):
            return set()
        if options.clean_pixels == "always":
            raise _Unsupported
        ds = Dataset({e.tag: _raw(buf, e, implicit) for e in elements if e.items is None})
        ds.set_original_encoding(implicit, True, None)
        if options.clean_pixels == "auto" and ("Rows" not in ds or "Columns" not in ds):
            raise _Unsupported
        if burned_in_risk(ds):
            raise _Unsupported
        return {int(t) for t, e in ds._dict.items() if not isinstance(e, RawDataElement)}

    def _dataset(self, buf: memoryview, elements: list[_Element], implicit: bool, mode: str,
                 read: set[int] | frozenset[int], depth: int) -> dict[int, bytes]:
        walker = self.walker
        tags = {e.tag: e for e in elements}
        local_code = False
        if _CODE_MEANING in tags:
            scheme = tags.get(_CODING_SCHEME)
            text = "" if scheme is None else _text(_value(buf, scheme)).strip().upper()
            local_code = text not in walker.policy.standard_schemes
            read = set(read) | {_CODING_SCHEME}
        if _CHARSET in tags and depth:
            read = set(read) | {_CHARSET}
        out: dict[int, bytes] = {}
        decisions = self._decisions
        for e in elements:
            tag = e.tag
            if tag >> 16 < 0x0008:
                raise _Unsupported
            vr = self._vr(e)
            key = (tag, vr, mode, local_code)
            action = decisions.get(key)
            if action is None:
                action = walker.decide(tag, vr, _raw(buf, e, implicit), mode, None, local_code)
                if vr != "UI" or walker.profile.row_for(tag) is not None:
                    decisions[key] = action  # an unlisted UID's decision depends on its value
            if action == "X":
                continue
            if action == KEEP_AS_IS or action not in ("K", "Z", "D", "U"):
                raise _Unsupported
            if e.items is not None or vr == "SQ":
                if e.items is None or vr != "SQ":
                    raise _Unsupported
                if action == "Z":
                    out[tag] = _element_header(tag, "SQ", 0, implicit)
                else:
                    # as the engine's walk: a kept sequence starts afresh, a dummied one
                    # dummies inside, an unlisted one goes on as its parent does
                    inner = "normal" if action == "K" else "D" if action == "D" else mode
                    out[tag] = self._sequence(buf, e, implicit, inner, depth)
                continue
            if action == "K" or (action in ("Z", "D") and vr != "UI" and tag != _PATIENT_ID
                                 and _is_blank(buf, e)):
                out[tag] = _kept(buf, e, vr, implicit) if tag in read else _copied(buf, e, implicit)
            elif action in ("Z", "D") and vr != "UI" and tag != _PATIENT_ID:
                if action == "Z":
                    out[tag] = _element_header(tag, _header_vr(vr, implicit), 0, implicit)
                else:
                    out[tag] = _dummy(tag, vr, implicit)
            elif vr == "UI" and action in ("Z", "D", "U"):
                out[tag] = self._uids(buf, e, action, implicit)
            elif tag == _PATIENT_ID and action in ("Z", "D"):
                out[tag] = self._patient_id(buf, e, vr, action, implicit)
            else:
                raise _Unsupported  # a U on something that is not a UID: the engine decides
        return out

    def _vr(self, e: _Element) -> str:
        """The VR the engine decides by (:func:`~safepacs.deid.actions.vr_of`): as encoded, else the dictionary's."""
        if e.vr is not None:
            return e.vr.decode()
        vr = self._implicit_vrs.get(e.tag)
        if vr is None:
            try:
                vr = dictionary_VR(e.tag)
            except KeyError:
                vr = "UN"
            self._implicit_vrs[e.tag] = vr
        return vr

    def _uids(self, buf: memoryview, e: _Element, action: str, implicit: bool) -> bytes:
        """Z, D and U on a UID as the engine does them, on the ASCII value: UIDs mapped
        one by one, or emptied; an empty value is written empty."""
        text = _text(_value(buf, e)).rstrip("\x00 ")  # pydicom's reading of a UI value
        if not text or action == "Z":
            return _element_header(e.tag, "UI", 0, implicit)
        return _ui_element(e.tag, "\\".join(self.keys.uid(v) for v in text.split("\\")), implicit)

    def _patient_id(self, buf: memoryview, e: _Element, vr: str, action: str, implicit: bool) -> bytes:
        """Z or D on PatientID as the engine does them: emptied, or its pseudonym."""
        raw = _raw(buf, e, implicit)
        elem = _converted(raw)
        if elem.is_empty:
            return _reencoded(raw, implicit)
        if action == "Z":
            return _encode(_new(e.tag, vr, ""), implicit)
        return _encode(_new(e.tag, vr, self.keys.pseudonym("PatientID", str(elem.value or ""))), implicit)

    def _sequence(self, buf: memoryview, e: _Element, implicit: bool, mode: str, depth: int) -> bytes:
        parts = []
        for undefined, elements in e.items or ():
            body = self._dataset(buf, elements, implicit, mode, frozenset(), depth + 1)
            data = b"".join(body[t] for t in sorted(body))
            if undefined:
                parts.append(_ITEM_HEAD + struct.pack("<L", UNDEFINED) + data + _ITEM_END_BYTES)
            else:
                parts.append(_ITEM_HEAD + struct.pack("<L", len(data)) + data)
        value = b"".join(parts)
        if e.length == UNDEFINED:
            return _element_header(e.tag, "SQ", UNDEFINED, implicit) + value + _SEQ_END_BYTES
        return _element_header(e.tag, "SQ", len(value), implicit) + value

    # --- identifiers and file meta ------------------------------------------------
    def _meta(self, meta: dict[int, tuple[bytes, memoryview]], sop: str, ds_class: str) -> bytes:
        """The file meta group as the engine's writer makes it: version, SOP class and
        instance (synced with the dataset), transfer syntax, safepacs' implementation."""
        uids = {}
        for tag in (0x00020002, 0x00020003, 0x00020010):
            if tag not in meta or meta[tag][0] != b"UI":
                raise _Unsupported
            uids[tag] = _ui_text(meta[tag][1])
            if not uids[tag]:
                raise _Unsupported  # pydicom's meta check refuses it: the engine's path says so
        elements: dict[int, bytes] = {}
        version = meta.get(0x00020001)
        if version is not None and len(version[1]) and not len(version[1]) & 1 and version[0] == b"OB":
            elements[0x00020001] = _element_header(0x00020001, "OB", len(version[1]), False) + bytes(version[1])
        elif version is None:
            elements[0x00020001] = _element_header(0x00020001, "OB", 2, False) + b"\x00\x01"
        else:
            raise _Unsupported
        sop_class = ds_class or uids[0x00020002]
        instance = sop
        if not instance:
            instance = uids[0x00020003]
            if not self.options.retain_uids:
                instance = self.keys.uid(instance)
        for tag, value in ((0x00020002, sop_class), (0x00020003, instance),
                           (0x00020010, uids[0x00020010]),
                           (0x00020012, IMPLEMENTATION_CLASS_UID)):
            elements[tag] = _ui_element(tag, value, False)
        elements[0x00020013] = _version_name()
        body = b"".join(elements[t] for t in sorted(elements))
        return _element_header(0x00020000, "UL", 4, False) + struct.pack("<L", len(body)) + body


# --- byte-level helpers ----------------------------------------------------------
def _identifiers(body: dict[int, bytes], implicit: bool) -> tuple[str, str, str, str]:
    """The output's PatientID and UIDs, read back from what was encoded (single values: the
    engine's path names a file after several otherwise)."""
    out = [_encoded_text(body.get(tag), implicit) for tag in (_PATIENT_ID, 0x0020000D, 0x0020000E, 0x00080018)]
    return out[0], out[1], out[2], out[3]


def _encoded_text(encoded: bytes | None, implicit: bool) -> str:
    """The single ASCII value of one encoded element ("" when absent or empty)."""
    if encoded is None:
        return ""
    head = 8 if implicit or len(encoded) < 12 or encoded[4:6] not in _LONG else 12
    value = encoded[head:].decode("ascii").rstrip("\x00 ").strip()
    if "\\" in value:
        raise _Unsupported
    return value


def _meta(buf: memoryview) -> tuple[dict[int, tuple[bytes, memoryview]], int]:
    """File meta elements (explicit VR little endian) and where the dataset starts."""
    out: dict[int, tuple[bytes, memoryview]] = {}
    scanner = _Scanner(buf, False, True)  # complete headers and real VRs, or StructureError
    pos = 132
    last = -1
    while pos + 8 <= len(buf):
        if struct.unpack_from("<H", buf, pos)[0] != 0x0002:
            return out, pos
        tag, vr, length, value = scanner.header(pos, len(buf), False)
        if tag <= last or length == UNDEFINED or value + length > len(buf):
            raise _Unsupported
        last = tag
        if tag != 0x00020000:
            out[tag] = (bytes(vr or b""), buf[value : value + length])
        pos = value + length
    raise _Unsupported


def _dataset(buf: memoryview, pos: int, end: int, implicit: bool, depth: int, *,
             top: bool = False, item_end: bool = False) -> tuple[list[_Element], int]:
    """Elements from ``pos`` (strictly checked: complete headers, real VRs, ascending tags,
    lengths within bounds); at the top level, up to the pixel group."""
    if depth > _MAX_DEPTH:
        raise _Unsupported
    out: list[_Element] = []
    last = -1
    while pos < end:
        if pos + 8 > end:
            raise _Unsupported
        group, number = struct.unpack_from("<HH", buf, pos)
        tag = (group << 16) | number
        if top and tag in PIXEL_TAGS:  # where the engine's reader (stop_before_pixels) stops
            return out, pos
        if group == 0xFFFE:
            if item_end and tag == _ITEM_END:
                return out, pos + 8
            raise _Unsupported
        if tag <= last:
            raise _Unsupported
        last = tag
        if implicit:
            vr = None
            (length,) = struct.unpack_from("<L", buf, pos + 4)
            value = pos + 8
        else:
            vr = bytes(buf[pos + 4 : pos + 6])
            if vr not in _VRS or (vr == b"UN" and not group & 1):
                # pydicom gives a standard element read as UN its dictionary VR by rules of
                # its own (on reading, on access): the engine's path handles those files
                raise _Unsupported
            if vr in _LONG:
                if pos + 12 > end:
                    raise _Unsupported
                (length,) = struct.unpack_from("<L", buf, pos + 8)
                value = pos + 12
            else:
                (length,) = struct.unpack_from("<H", buf, pos + 6)
                value = pos + 8
        if vr == b"SQ" or (implicit and _is_sq_implicit(tag, length)):
            items, stop = _items(buf, value, end, length, implicit, depth + 1)
            out.append(_Element(tag, vr, value, length, stop, items))
            pos = stop
            continue
        if length == UNDEFINED or value + length > end:
            raise _Unsupported  # undefined-length UN, or cut short: the engine decides
        out.append(_Element(tag, vr, value, length, value + length))
        pos = value + length
    if item_end:
        raise _Unsupported
    return out, pos


def _items(buf: memoryview, pos: int, end: int, length: int, implicit: bool,
           depth: int) -> tuple[list[tuple[bool, list[_Element]]], int]:
    items: list[tuple[bool, list[_Element]]] = []
    stop = end if length == UNDEFINED else pos + length
    if stop > end:
        raise _Unsupported
    while pos < stop:
        if pos + 8 > stop:
            raise _Unsupported
        group, number, ilen = struct.unpack_from("<HHL", buf, pos)
        tag = (group << 16) | number
        if length == UNDEFINED and tag == _SEQ_END:
            return items, pos + 8
        if tag != _ITEM:
            raise _Unsupported
        if ilen == UNDEFINED:
            elements, pos = _dataset(buf, pos + 8, stop, implicit, depth, item_end=True)
            items.append((True, elements))
        else:
            if pos + 8 + ilen > stop:
                raise _Unsupported
            elements, _ = _dataset(buf, pos + 8, pos + 8 + ilen, implicit, depth)
            items.append((False, elements))
            pos += 8 + ilen
    if length == UNDEFINED:
        raise _Unsupported  # no sequence delimiter before the end of what was read
    return items, stop


def _raw(buf: memoryview, e: _Element, implicit: bool) -> RawDataElement:
    vr = None if e.vr is None else e.vr.decode()
    value = None if e.items is not None else bytes(buf[e.value : e.end])
    return RawDataElement(BaseTag(e.tag), vr, e.length, value, e.value, implicit, True, True, False)


def _value(buf: memoryview, e: _Element) -> bytes:
    return bytes(buf[e.value : e.end])


def _text(value: bytes | memoryview) -> str:
    """ASCII text of a raw value (anything else: the engine's path decodes it)."""
    data = bytes(value)
    if not data.isascii() or b"\x1b" in data:
        raise _Unsupported
    return data.decode("ascii")


def _ui_text(value: bytes | memoryview) -> str:
    """A single UID as pydicom reads it (trailing NULs and spaces dropped)."""
    text = _text(value).rstrip("\x00 ")
    if "\\" in text:
        raise _Unsupported  # several values where one is expected: the engine decides
    return text


def _ui_element(tag: int, text: str, implicit: bool) -> bytes:
    """A UI element as the engine's writer encodes it (one NUL pads an odd length)."""
    value = text.encode("ascii")
    if len(value) & 1:
        value += b"\x00"
    if len(value) > 0xFFFF:
        raise _Unsupported
    return _element_header(tag, "UI", len(value), implicit) + value


@lru_cache(maxsize=1)
def _version_name() -> bytes:
    return _encode(DataElement(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME), False)


def _check_charset(buf: memoryview, e: _Element) -> None:
    """A character set the engine refuses (unknown terms) is refused by the engine's path."""
    for term in _text(_value(buf, e)).split("\\"):
        term = term.strip(" \x00")
        if term and term not in python_encoding:
            raise _Unsupported


def _is_blank(buf: memoryview, e: _Element) -> bool:
    return not _value(buf, e).strip(b" \x00")


def _converted(raw: RawDataElement) -> DataElement:
    """The element as the engine's path decodes it; only plain ASCII values are decoded here
    (they read the same in every character set)."""
    if raw.value is not None and (not raw.value.isascii() or b"\x1b" in raw.value):
        raise _Unsupported
    return convert_raw_data_element(raw, encoding=[default_encoding])


def _copied(buf: memoryview, e: _Element, implicit: bool) -> bytes:
    """A kept element: its value byte for byte under a header written afresh (the engine's
    writer re-encodes odd lengths, and zeroes the reserved bytes of a long header)."""
    if e.length & 1:
        raise _Unsupported
    vr = "" if e.vr is None else e.vr.decode()
    return _element_header(e.tag, vr, e.length, implicit) + bytes(buf[e.value : e.end])


def _reencoded(raw: RawDataElement, implicit: bool) -> bytes:
    """A kept element the engine's path decoded on the way: encoded again as its writer
    does (which is the input's bytes when they were already in canonical form)."""
    return _encode(_converted(raw), implicit)


#: VRs whose canonical values the engine's writer re-encodes to the very same bytes
_CANONICAL_VRS = frozenset({"AE", "CS", "DA", "DT", "LO", "SH", "TM", "UI"})


def _kept(buf: memoryview, e: _Element, vr: str, implicit: bool) -> bytes:
    """A kept element that the engine's path decoded on the way (and so re-encodes):
    copied when its value is in the canonical form that re-encoding gives back."""
    value = _value(buf, e)
    if vr in _CANONICAL_VRS and _canonical(value, b"\x00" if vr == "UI" else b" "):
        return _element_header(e.tag, vr if not implicit else "", len(value), implicit) + value
    return _reencoded(_raw(buf, e, implicit), implicit)


_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")


def _canonical(value: bytes, pad: bytes) -> bool:
    """Printable ASCII, no space or NUL around any value, padded with one ``pad`` only when
    odd.  Control characters are out: Python's decoding strips some of them (\\x1c-\\x1f are
    whitespace to ``str.strip``), so re-encoding would not give them back."""
    if len(value) & 1:
        return False
    core = value[:-1] if value.endswith(pad) else value
    if _NOT_PRINTABLE.search(core):
        return False
    if core is not value and not len(core) & 1:
        return False  # a pad where the value needed none
    return all(p == p.strip(b" \x00") and p for p in core.split(b"\\")) or not core


def _encode(elem: DataElement, implicit: bool) -> bytes:
    text = _ascii_text(elem)
    if text is None:
        raise _Unsupported
    return _element_header(int(elem.tag), _header_vr(elem.VR, implicit), len(text), implicit) + text


def _header_vr(vr: str, implicit: bool) -> str:
    if not implicit and vr.encode() not in _VRS:
        raise _Unsupported
    return vr


@lru_cache(maxsize=256)
def _dummy(tag: int, vr: str, implicit: bool) -> bytes:
    value = dummy_value(vr)
    if not isinstance(value, str):
        raise _Unsupported
    return _encode(_new(tag, vr, value), implicit)


@lru_cache(maxsize=16)
def _marks(options: Options, implicit: bool) -> dict[int, bytes]:
    """The marks, encoded by the engine's own writer (once per options and syntax)."""
    out = {}
    for tag, vr, value in mark_elements(options):
        elem = _new(tag, vr, value)
        if vr != "SQ":
            out[tag] = _encode(elem, implicit)
            continue
        fp = DicomBytesIO()
        fp.is_implicit_VR = implicit
        fp.is_little_endian = True
        _write_sequence(fp, elem, implicit, None)
        out[tag] = fp.getvalue()
    return out
