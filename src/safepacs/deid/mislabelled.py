"""Text in another character set than the one its dataset declares.

Systems in Chinese, Japanese and Korean hospitals often write UTF-8 and declare GB18030,
GBK or an ISO 2022 set, or write GB18030 and declare UTF-8.  Decoded as declared, such
text either turns into characters that depend on the bytes around them (a multi-byte set
misread) or into replacement characters (invalid UTF-8).  Either way the patient's name
inside a description no longer reads as it does in PatientName, so scrubbing cannot find
it, and its bytes stay in the output for anyone who reads them in the right set.

So the text values are checked, raw, before anything decodes them, and the dataset is read
in the set they are actually in when that differs from the declared one:

* a multi-byte declaration (not UTF-8) whose every non-ASCII value is valid UTF-8 is read
  as UTF-8 (genuine GB18030 or ISO 2022 text is almost never valid UTF-8 throughout);
* a UTF-8 declaration with invalid UTF-8 whose every non-ASCII run looks like two-byte
  GB text (even length, bytes from 0x81) and decodes as GB18030 is read as GB18030;
* any other declaration a value does not decode in, when it is multi-byte or UTF-8, is
  read as ISO_IR 100: each byte is then one character, so the same bytes read the same
  everywhere and a name is found wherever its bytes are.  When that text mixes UTF-8 with
  another set (a modality's own text in GB18030, a worklist's request in UTF-8), a name
  written in one set has other bytes in the other: free text that would be cleaned is
  removed instead (fail closed).

Values with ISO 2022 escape sequences are text in the declared set, and a declaration
whose first set (the one text without escapes is decoded in) is single-byte already reads
the same bytes alike everywhere: both are left as declared.
The bytes themselves never change; the dataset then declares the set it is read in.

Before that, a declaration spelled otherwise than the standard's defined terms ("GB2312",
"UTF-8", "ISO-IR 192", "ISO_IR192": everyday in Chinese hospitals) is declared by the term
it means (``data/charset_aliases.json``); only a value that means none is refused.
"""

from __future__ import annotations

import codecs
import json
import re
import warnings
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from typing import NamedTuple

from pydicom import config
from pydicom.charset import convert_encodings, python_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from safepacs.deid.actions import vr_of

#: Python codecs of the multi-byte sets (canonical names), whose decoding depends on context
MULTI_BYTE = frozenset({"gb18030", "gbk", "gb2312", "iso2022_jp", "iso2022_jp_2", "euc_kr", "shift_jis"})
#: the VRs whose values are text in the dataset's character set
TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "PN"})
SPECIFIC_CHARACTER_SET = 0x00080005
UTF8_TERM, GB18030_TERM, LATIN1_TERM = "ISO_IR 192", "GB18030", "ISO_IR 100"
#: where :func:`read_as_written` leaves what it changed, so that a later call (the
#: engine's, after a caller that read the original header first) gets it for the delta
_DONE = "_safepacs_declared_charset"
_NON_ASCII_RUN = re.compile(rb"[\x80-\xff]+")
_UTF8_CJK = re.compile(rb"[\xe0-\xef][\x80-\xbf][\x80-\xbf]")


def declared_terms(ds: Dataset) -> list[str]:
    """The terms of ``ds``'s SpecificCharacterSet as written, padding stripped (an empty
    first term kept: it names the default set); none when it declares nothing."""
    elem = ds.get_item(SPECIFIC_CHARACTER_SET)
    if elem is None or not elem.value:
        return []
    value = elem.value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").split("\\")
    terms = [value] if isinstance(value, str) else list(value)
    return [str(t or "").strip(" \x00") for t in terms]


def declared_codecs(ds: Dataset) -> list[str]:
    """The Python codecs ``ds`` declares, in order (empty when it declares none or an
    unknown one)."""
    terms = declared_terms(ds)
    if not terms:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return list(convert_encodings(terms))
        except (LookupError, ValueError, TypeError):
            return []


def written_in(ds: Dataset) -> str | None:
    """The DICOM term of the character set ``ds``'s text is written in, when that is not the
    one it declares (see the module's rules); None to read it as declared.

    The dataset's own values decide when they read as declared (sequences are written by
    the same system, and parsing them all would cost a fifth of de-identification); the
    values inside its sequences are read as well when it has no non-ASCII text of its own,
    when they may hold UTF-8 text under a multi-byte declaration, and to confirm any other
    answer."""
    return _decide(ds)[0]


def _decide(ds: Dataset) -> tuple[str | None, bool]:
    """(:func:`written_in`'s answer, whether the text mixes UTF-8 with another set)."""
    declared = declared_codecs(ds)
    # text without escape sequences is decoded in the first set: only a multi-byte or UTF-8
    # one reads the same bytes differently in different places
    first = _canonical(declared[0]) if declared else ""
    if first != "utf-8" and first not in MULTI_BYTE:
        return None, False
    top = [raw for raw in _raw_texts(ds, deep=False) if not raw.isascii()]
    term = _written_in(first, top) if top else None
    if top and term is None and (first == "utf-8" or not _utf8_in_sequences(ds)):
        return None, False
    values = [raw for raw in _raw_texts(ds, deep=True) if not raw.isascii()]
    term = _written_in(first, values)
    utf8 = [_decodes(raw, "utf-8") for raw in values]
    return term, term is not None and any(utf8) and not all(utf8)


def _utf8_in_sequences(ds: Dataset) -> bool:
    """A sequence of ``ds`` may hold UTF-8 text: its bytes have a three-byte UTF-8 character
    (CJK text in UTF-8 is made of them).  Cheap, and never wrong the other way: without one,
    no sequence holds CJK text in UTF-8, so a multi-byte declaration the dataset's own text
    bears out stands.  (GB text can look like one too; the sequences are then parsed.)"""
    for elem in ds._dict.values():
        if not isinstance(elem, RawDataElement):
            if elem.VR == "SQ":
                return True  # parsed already: look inside the proper way
            continue
        value = elem.value
        if value and not value.isascii() and _UTF8_CJK.search(value) and vr_of(elem) == "SQ":
            return True
    return False


def _written_in(first: str, values: list[bytes]) -> str | None:
    """The rules of the module, for the non-ASCII text ``values`` of a dataset whose text
    decodes in ``first`` as declared."""
    if not values or any(b"\x1b" in raw for raw in values):
        return None
    if first == "utf-8":
        if all(_decodes(raw, "utf-8") for raw in values):
            return None
        if all(_looks_gb(raw) for raw in values):
            return GB18030_TERM
        return LATIN1_TERM
    if all(_decodes(raw, "utf-8") for raw in values):
        return UTF8_TERM
    if all(_decodes(raw, first) for raw in values):
        return None  # genuine text in the declared set
    return LATIN1_TERM


def standard_terms(ds: Dataset) -> list[str] | None:
    """The defined terms ``ds``'s SpecificCharacterSet means when it is spelled otherwise
    (see the module); None when it is absent, standard already, or means nothing known."""
    terms = declared_terms(ds)
    if not terms or all(t in python_encoding for t in terms):
        return None
    known = _spellings()
    fixed = [t if t in python_encoding else known.get(_normal(t)) for t in terms]
    if any(t is None for t in fixed):
        return None  # refused by the engine, with the value's own term
    return fixed  # type: ignore[return-value]


class Relabel(NamedTuple):
    """What :func:`read_as_written` changed."""

    original: DataElement | RawDataElement  # the SpecificCharacterSet element as it was
    declared: list[str]  # the codecs it named
    #: the text mixes UTF-8 with another set: a name written in one cannot be matched in
    #: text written in the other, so free text cannot be cleaned and is removed instead
    mixed: bool


def read_as_written(ds: Dataset) -> Relabel | None:
    """Declare, in place, the defined terms of a misspelled declaration
    (:func:`standard_terms`) and then the character set ``ds``'s text is written in when
    :func:`written_in` finds another than the declared one, so that every value not decoded
    yet is decoded in it and written back byte for byte.  Returns what changed (for the
    identity delta, and for cleaning), or None when ``ds`` is left as it was.  Call it
    before anything reads a value."""
    if _DONE in ds.__dict__:  # already asked: the same answer again (values read since
        return ds.__dict__[_DONE]  # then are no longer raw, and must not change it)
    answer = None
    original = ds.get_item(SPECIFIC_CHARACTER_SET)
    if original is not None:  # nothing declared: read by the default, alike everywhere
        declared = declared_codecs(ds) or ["iso8859"]
        spelled = standard_terms(ds)
        if spelled is not None:
            _declare(ds, spelled)
        term, mixed = _decide(ds)
        if term is not None:
            _declare(ds, [term])
        if spelled is not None or term is not None:
            answer = Relabel(original, declared, mixed)
    ds.__dict__[_DONE] = answer
    return answer


def _declare(ds: Dataset, terms: list[str]) -> None:
    tag = BaseTag(SPECIFIC_CHARACTER_SET)
    value: str | list[str] = terms[0] if len(terms) == 1 else terms
    ds._dict[tag] = DataElement(tag, "CS", value, validation_mode=config.IGNORE)
    implicit, little = ds.original_encoding
    ds.set_original_encoding(implicit, little, ds._character_set)  # pydicom decodes raw values by it
    _tell_items(ds, ds._character_set)


def _normal(term: str) -> str:
    return re.sub(r"[\s_\-]", "", term).upper()


@lru_cache(maxsize=1)
def _spellings() -> dict[str, str]:
    """Normalised spelling -> defined term: the defined terms themselves and the aliases."""
    doc = json.loads(resources.files("safepacs.deid").joinpath("data/charset_aliases.json").read_text("utf-8"))
    out = {_normal(term): term for term in python_encoding if term}
    for alias, term in doc["aliases"].items():
        if term not in python_encoding:
            raise ValueError(f"charset_aliases.json: {term!r} is not a defined term")
        out.setdefault(_normal(alias), term)
    return out


def _canonical(codec: str) -> str:
    try:
        return codecs.lookup(codec).name
    except LookupError:
        return ""


def _decodes(raw: bytes, codec: str) -> bool:
    try:
        raw.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _looks_gb(raw: bytes) -> bool:
    """Two-byte GB text: every non-ASCII run of even length, from 0x81 up, valid GB18030.
    (Latin-1 names put one accented letter between ASCII ones: odd runs.)"""
    runs = _NON_ASCII_RUN.findall(raw)
    return all(len(run) % 2 == 0 for run in runs) and _decodes(raw, "gb18030")


def _raw_texts(ds: Dataset, *, deep: bool) -> Iterator[bytes]:
    """Raw values of the text elements not yet decoded; ``deep``: items of sequences
    included, parsed in place (their text stays undecoded, and :func:`_declare` tells them
    a new declaration)."""
    for tag, elem in list(ds._dict.items()):
        if isinstance(elem, RawDataElement):
            if not elem.value or elem.value.isascii():
                continue  # no non-ASCII text in it, at any depth (the common case: cheap)
            vr = vr_of(elem)  # UN for an unknown private tag: removed unless kept as safe
            if vr in TEXT_VRS:
                yield bytes(elem.value)
                continue
            if vr != "SQ" or not deep:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    elem = ds[tag]
                except Exception:  # noqa: BLE001 - malformed: the walk refuses it with its reason
                    continue
        if elem.VR == "SQ" and deep:
            for item in elem.value or ():
                yield from _raw_texts(item, deep=True)


def _tell_items(ds: Dataset, encodings: list[str]) -> None:
    """Items parsed under the old declaration, without one of their own, inherit the new."""
    for elem in ds._dict.values():
        if isinstance(elem, RawDataElement) or elem.VR != "SQ":
            continue
        for item in elem.value or ():
            if SPECIFIC_CHARACTER_SET in item._dict:
                continue
            item._parent_encoding = encodings
            implicit, little = item.original_encoding
            item.set_original_encoding(implicit, little, encodings)
            _tell_items(item, encodings)
