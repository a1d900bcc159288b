"""``safepacs verify-deid ORIGINAL DEID``: the check users run before releasing data.

Every identifying value of the originals (names and their parts, IDs, dates in their
written forms, addresses, phones, UIDs, free text, private values) becomes a needle; every
de-identified file is then searched for all of them, element by element as decoded text
and as raw bytes in each plausible character set (UTF-8, GB18030, Latin-1 and the ISO 2022
sets the file declares), so a value hidden in a private blob or mis-declared encoding is
still found.  Files may have been renamed, so needles from all originals are searched in
all de-identified files.

What a file legitimately keeps is read from its own DeidentificationMethodCodeSequence:
dates under Retain Longitudinal Full Dates, device identity under Retain Device Identity,
and so on.  Names, IDs, birth dates, addresses, phones, resident IDs and private values are
always a leak.  One exception is shown apart rather than counted: an attribute that a
declared option keeps (a StationName under Retain Device Identity) and that holds what an
original held in the same attribute may contain another needle -- a vendor's private copy
of part of the station name, a word of free text.  Such a finding is listed as "kept by a
declared option" unless the needle is a person's identity (a name, an ID, a birth date...),
which stays a leak; ``--strict`` counts them all.

Values of attributes that do not identify (those Annex E does not list: a Manufacturer, a
model name, a private creator) excuse needles only where an original held them: a needle
equal to such a value, or free text, a private value, an institution or a device inside it,
is no leak in the same attribute (same path of tags) holding that same value, and is a leak
everywhere else -- a PatientID equal to some kept attribute's value is still found in a
comment.  A person's name or ID inside a longer such value stays a leak there too.

Nothing identifying is printed or written: leaks carry masked values ("Z***i"), file paths
are shown with any identifying part masked, and originals are only counted.
"""

from __future__ import annotations

import bisect
import codecs
import copy
import json
import logging
import mmap
import re
import struct
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import Dataset, config, dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.errors import InvalidDicomError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from safepacs.deid.freetext import (
    bytes_literal_regex,
    find_patterns,
    is_bounded,
    is_word_char,
    iter_needle_matches,
    needle_regex,
)
from safepacs.deid.identifiers import (
    FREE_TEXT,
    GENERIC_VALUES,
    KIND_WAIVERS,
    NON_IDENTIFYING,
    PRIVATE,
    TEXT_VRS,
    Needle,
    dataset_encodings,
    element_texts,
    identifying_forms,
    iter_values,
    needles_for,
    normalize,
)
from safepacs.deid.keys import Keys
from safepacs.deid.mislabelled import read_as_written, standard_terms, written_in
from safepacs.deid.options import BASIC_PROFILE_CODE, CLEAN_PIXEL_DATA_CODE, OPTION_CODES, Options
from safepacs.deid.profile import load_profile
from safepacs.errors import SafepacsError

#: Leak kinds, most serious first: a value found under several kinds is reported as the first.
KIND_PRIORITY: tuple[str, ...] = (
    "name", "birth_date", "id", "resident_id", "phone", "email", "address", PRIVATE,
    "date", "uid", "institution", "device", "patient_characteristic", "other_text", FREE_TEXT,
)
_RANK = {k: i for i, k in enumerate(KIND_PRIORITY)}
_BASE_ENCODINGS = ("utf_8", "gb18030", "latin_1")
_UNPARSED_ENCODINGS = (*_BASE_ENCODINGS, "iso2022_jp", "euc_kr")
_ISO2022_RESETS = (b"\x1b(B", b"\x1b(J")
_MAX_TEXT_NEEDLE = 512
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "FL", "FD", "SL", "SS", "UL",
                         "US", "SV", "UV", "AT"})
_PATTERN_VRS = frozenset({"LO", "LT", "SH", "ST", "UT", "UC", "PN", "UN", "OB"})
_ENCAPSULATED_DOCUMENT = 0x00420011
_DEFLATED = "1.2.840.10008.1.2.1.99"
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_UNDEFINED = 0xFFFFFFFF
#: Dummy values a de-identifier writes; an original holding one identifies nobody.
_DUMMY_KEYS = frozenset({"19000101", "19700101", "00010101", "000000"})
#: Words of the de-identification record itself (CID 7050 meanings, flags).
_VOCABULARY = frozenset(
    normalize(s)
    for s in (
        "YES", "NO", "MODIFIED", "UNMODIFIED", "REMOVED", "DCM",
        BASIC_PROFILE_CODE[1], CLEAN_PIXEL_DATA_CODE[1],
        *(meaning for _, meaning in OPTION_CODES.values()),
    )
)
_MAX_TABLE_ROWS = 200
#: Kinds not reported inside a value that the originals hold, whole, in the same
#: non-identifying attribute: a site named after its scanner's vendor shares words with the
#: kept vendor name.
_VENDOR_KINDS = frozenset({"institution", "device"})
#: Kinds that identify a person: a leak even inside an attribute a declared option keeps.
PERSON_KINDS = frozenset({"name", "birth_date", "id", "resident_id", "phone", "email", "address"})


class VerifyInputError(SafepacsError):
    """ORIGINAL or DEID is missing, empty or unreadable: the check cannot be made."""


@dataclass(frozen=True)
class Leak:
    """One identifying value found in a de-identified file.  ``masked`` is safe to show."""

    deid_file: str
    location: str
    kind: str
    masked: str
    #: the declared option(s) keeping the attribute, for a finding that is not counted
    kept_by: str = ""


@dataclass
class VerifyResult:
    """The outcome of one verification run; nothing in it is PHI."""

    leaks: list[Leak] = field(default_factory=list)
    #: findings inside attributes that a declared option keeps, whole as in an original
    kept: list[Leak] = field(default_factory=list)
    files_checked: int = 0
    originals_read: int = 0
    originals_skipped: int = 0
    unparsed_files: int = 0
    needles: int = 0
    errors: list[str] = field(default_factory=list)
    #: de-identified files whose pixels were read by OCR (cleaned or at burned-in risk)
    pixel_files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.leaks and not self.errors


def mask(value: str) -> str:
    """Show at most the first and last character: enough to recognise, not to identify."""
    v = "".join(ch for ch in value if ch.isprintable()).strip()
    if len(v) <= 3:
        return "***"
    shown = v[0] + "***" + (v[-1] if len(v) > 5 else "")
    return shown if shown != value else "***"


# ------------------------------------------------------------------------- needle index
@dataclass
class _Entry:
    forms: set[tuple[str, ...]] = field(default_factory=set)
    sources: set[tuple[str, frozenset[str]]] = field(default_factory=set)
    #: the patients (see :meth:`NeedleIndex.patient_of`) whose originals hold the needle
    owners: set[int] = field(default_factory=set)


#: Pseudo-option: a file's dates were shifted per patient and a key lets verify check them
#: against that patient's own original dates only (other patients' dates may coincide).
PER_PATIENT_DATES = "per_patient_dates"

_DECIMAL = re.compile(r"[-+]?\d*\.\d+([eE][-+]?\d+)?")


def _worth_searching(key: str) -> bool:
    """Too short, numeric-short or dummy values would only produce false alarms."""
    if not key or key in GENERIC_VALUES or key in _DUMMY_KEYS or len(set(key)) == 1:
        return False
    if key.isascii():
        return len(key) >= (6 if key.isdigit() else 4)
    return len(key) >= 2


def _active_kind(
    sources: Iterable[tuple[str, frozenset[str]]], enabled: frozenset[str]
) -> str | None:
    """The kind to report under ``enabled`` options, or None when every source is waived.

    A private copy of a public value is judged by the public attribute's rules.
    """
    sources = list(sources)
    public = [s for s in sources if s[0] != PRIVATE] or sources
    active = [kind for kind, waivers in public if not (waivers & enabled)]
    return min(active, key=lambda k: _RANK.get(k, len(_RANK))) if active else None


class NeedleIndex:
    """Everything to look for, gathered from the originals, compiled per option set."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._matchers: dict[frozenset[str], _Matcher] = {}
        #: the originals' non-identifying values (normalised) by path of tags, each with the
        #: patients whose originals held it there: a needle is excused there only, never
        #: elsewhere (see :meth:`held` and :meth:`coincidence`)
        self._held_at: dict[tuple[int, ...], dict[str, set[int]]] = {}
        #: patient (PatientID, else PatientName, else the file itself) -> a small number
        self._patients: dict[str, int] = {}
        #: which whole-text needles lie inside a value held at a path (cached)
        self._inside: dict[tuple[tuple[int, ...], str], bool] = {}
        #: (keyword, normalised value) of the originals' attributes that options may keep
        self._option_kept: dict[tuple[str, str], frozenset[str]] = {}
        self._profile = load_profile()

    def patient_of(self, ds: Dataset) -> int:
        """The patient an original belongs to, as far as its header tells: its PatientID,
        else its PatientName; an original naming neither is a patient of its own.  Two
        patients sharing an ID count as one, which only excuses less."""
        who = ""
        for keyword in ("PatientID", "PatientName"):
            try:
                who = normalize(str(ds.get(keyword, "") or ""))
            except Exception:  # noqa: BLE001 - an undecodable value names nobody we can match
                who = ""
            if who:
                who = f"{keyword}:{who}"
                break
        if not who:
            who = f"file:{len(self._patients)}"
        return self._patients.setdefault(who, len(self._patients))

    def add_dataset(self, ds: Dataset, patient: int | None = None) -> None:
        """Add one original's identifying values (and note its non-identifying ones);
        ``patient``: whose they are (default: :meth:`patient_of` ``ds``)."""
        self._matchers.clear()
        if patient is None:
            patient = self.patient_of(ds)
        for v in iter_values(ds, self._profile):
            if v.keyword and v.waivers:
                where = (v.keyword, normalize(v.text))
                self._option_kept[where] = self._option_kept.get(where, frozenset()) | v.waivers
            if v.kind == NON_IDENTIFYING:
                if v.vr not in ("DS", "IS"):
                    here = self._held_at.setdefault(v.path, {})
                    here.setdefault(normalize(v.text), set()).add(patient)
                    self._inside.clear()
            elif v.kind == PRIVATE and _DECIMAL.fullmatch(v.text.strip()):
                continue  # a private measurement (e.g. a copy of ImagingFrequency), not an ID
            elif v.kind in (FREE_TEXT, PRIVATE):
                self._add(Needle((v.text.strip()[:_MAX_TEXT_NEEDLE],), v.kind), v.waivers, patient)
            else:
                for kind, form in identifying_forms(v):
                    waivers = v.waivers | KIND_WAIVERS.get(kind, frozenset())
                    if kind == "date":
                        waivers = waivers | {PER_PATIENT_DATES}
                    for needle in needles_for(kind, form):
                        self._add(needle, waivers, patient)

    def _add(self, needle: Needle, waivers: frozenset[str], patient: int) -> None:
        key = needle.key
        if not _worth_searching(key):
            return
        entry = self._entries.setdefault(key, _Entry())
        entry.forms.add(needle.parts)
        entry.sources.add((needle.kind, waivers))
        entry.owners.add(patient)

    def kept_by(self, keyword: str, text: str, enabled: frozenset[str]) -> frozenset[str]:
        """The ``enabled`` options under which an original held ``text`` in ``keyword``."""
        if not keyword or not enabled:
            return frozenset()
        return self._option_kept.get((keyword, normalize(text)), frozenset()) & enabled

    def waived(self, key: str, enabled: frozenset[str]) -> bool:
        """Whether some original holds this needle where an ``enabled`` option keeps it."""
        entry = self._entries.get(key)
        return entry is not None and any(w & enabled for _, w in entry.sources)

    def held(self, path: tuple[int, ...], normalized: str) -> bool:
        """Whether an original held this (normalised) value, as a non-identifying one, in
        the attribute at ``path``: the one place where it excuses the needles it holds."""
        return normalized in self._held_at.get(path, ())

    def coincidence(self, path: tuple[int, ...], normalized: str, key: str) -> bool:
        """Whether needle ``key``, found inside the value ``normalized`` that originals held
        at ``path`` as a non-identifying one, belongs only to other patients than those
        originals: a word of one patient's identity that happens to be in another patient's
        kept vendor text (a patient named "Name^Patient" and a Manufacturer "Manufacturer
        name here") tells nothing about the first patient.  Inside such a value of the
        patient's own originals it is still reported: fail closed."""
        holders = self._held_at.get(path, {}).get(normalized)
        entry = self._entries.get(key)
        return bool(holders) and entry is not None and holders.isdisjoint(entry.owners)

    def vocabulary_here(self, path: tuple[int, ...], key: str) -> bool:
        """Whether whole-text needle ``key`` lies inside a value an original held, as a
        non-identifying one, at ``path``: a StudyDescription "CHEST PA" inside the
        procedure's code meaning is vocabulary there even where that meaning was itself
        cleaned (Clean Structured Content) and so no longer equals what was held."""
        found = self._inside.get((path, key))
        if found is None:
            found = self._inside[(path, key)] = self.vocabulary(key) and any(
                key in value for value in self._held_at.get(path, {})
            )
        return found

    def vocabulary(self, key: str) -> bool:
        """Whether a needle is whole text only (free text, private values), never a name,
        an ID or a date: inside a non-identifying value held where an original held it,
        such a needle is vocabulary (a StudyDescription "CEREBRAL ANGIOGRAM" at the start
        of a kept procedure code meaning), not a fact about the patient."""
        entry = self._entries.get(key)
        return entry is not None and all(kind in (FREE_TEXT, PRIVATE) for kind, _ in entry.sources)

    def __len__(self) -> int:
        return sum(1 for k in self._entries if k not in _VOCABULARY)

    def matcher(self, enabled: frozenset[str]) -> _Matcher:
        """The compiled search for files that declare the ``enabled`` options."""
        found = self._matchers.get(enabled)
        if found is None:
            active: dict[str, tuple[set[tuple[str, ...]], str]] = {}
            for key, entry in self._entries.items():
                kind = None if key in _VOCABULARY else _active_kind(entry.sources, enabled)
                if kind is not None:
                    active[key] = (entry.forms, kind)
            found = self._matchers[enabled] = _Matcher(active)
        return found


class _Matcher:
    """One regex over all active needles for text, and one per charset set for raw bytes."""

    def __init__(self, active: dict[str, tuple[set[tuple[str, ...]], str]]) -> None:
        self.kinds = {key: kind for key, (_, kind) in active.items()}
        self._forms = {key: forms for key, (forms, _) in active.items()}
        rx = needle_regex(Needle(f, kind) for key, (forms, kind) in active.items() for f in forms)
        self._pattern = re.compile(rx, re.IGNORECASE) if rx else None
        self._bytes: dict[tuple[str, ...], tuple[re.Pattern[bytes] | None, dict]] = {}
        self._inner: dict[str, _Matcher] = {}

    def inner(self, key: str) -> _Matcher:
        """The search for the other needles inside needle ``key`` (a match of ``key``
        hides them); built once per key, and only for a key a kept value excuses."""
        found = self._inner.get(key)
        if found is None:
            n = len(key)
            if n * (n + 1) // 2 < len(self.kinds):  # look its substrings up, not every needle
                inside = {key[i:j] for i in range(n) for j in range(i + 1, n + 1)} & self.kinds.keys()
            else:
                inside = {k for k in self.kinds if k in key}
            inside.discard(key)
            found = self._inner[key] = _Matcher({k: (self._forms[k], self.kinds[k]) for k in inside})
        return found

    def display(self, key: str) -> str:
        """A readable form of a needle (to be masked before anyone sees it)."""
        forms = self._forms.get(key)
        return " ".join(min(forms)) if forms else key

    def find_text(self, text: str) -> Iterator[tuple[int, int, str]]:
        """(start, end, needle key) of every needle in a decoded value."""
        if self._pattern is None or not text:
            return
        for m in iter_needle_matches(self._pattern, text):
            yield m.start(), m.end(), normalize(m.group())

    def mask_text(self, text: str) -> str:
        """``text`` with every needle masked: for showing file paths safely."""
        out, last = [], 0
        for start, end, _ in self.find_text(text):
            out += [text[last:start], mask(text[start:end])]
            last = end
        return "".join(out) + text[last:]

    def _bytes_patterns(self, encodings: tuple[str, ...]) -> list[tuple[re.Pattern[bytes], dict]]:
        """ASCII needles read the same in every charset: one shared pattern for them, a
        small per-charset one for the rest (compiling is the expensive part of a run)."""
        if () not in self._bytes:
            ascii_needles = [(k, p) for k, p in self._needles() if "".join(p).isascii()]
            self._bytes[()] = _compile_literals(ascii_needles, ("ascii",))
        if encodings not in self._bytes:
            others = [(k, p) for k, p in self._needles() if not "".join(p).isascii()]
            self._bytes[encodings] = _compile_literals(others, encodings)
        return [p for p in (self._bytes[()], self._bytes[encodings]) if p[0] is not None]

    def _needles(self) -> Iterator[tuple[str, tuple[str, ...]]]:
        for key, forms in self._forms.items():
            for parts in forms:
                yield key, parts

    def find_bytes(
        self, buf: bytes | mmap.mmap, start: int, end: int, encodings: tuple[str, ...]
    ) -> Iterator[tuple[int, str]]:
        """(offset, needle key) of every encoded needle in ``buf[start:end]``."""
        for pattern, literals in self._bytes_patterns(encodings):
            pos = start
            while pos < end:
                m = pattern.search(buf, pos, end)
                if m is None:
                    break
                found = m.group()
                key = literals.get(found) or literals.get(found.lower())
                if key is None or not _left_ok(buf, m.start(), found, key):
                    pos = m.start() + 1
                    continue
                yield m.start(), key
                pos = m.end()


def _compile_literals(
    needles: Iterable[tuple[str, tuple[str, ...]]], encodings: tuple[str, ...]
) -> tuple[re.Pattern[bytes] | None, dict[bytes, str]]:
    """A bytes pattern for needles encoded in ``encodings``, and literal -> needle key."""
    literals: dict[bytes, str] = {}
    bounded: dict[bytes, bool] = {}
    for key, parts in needles:
        for literal, right in _encoded_forms(key, [parts], encodings):
            lookup = literal.lower() if _folds(literal) else literal
            literals.setdefault(lookup, key)
            bounded[lookup] = bounded.get(lookup, True) and right
    rx = bytes_literal_regex(bounded.items())
    return (re.compile(rx) if rx else None), literals


def _folds(literal: bytes) -> bool:
    return literal.isascii() and b"\x1b" not in literal


def _left_ok(buf: bytes | mmap.mmap, at: int, found: bytes, key: str) -> bool:
    if at == 0 or not _ascii_alnum(found[0]) or not is_bounded(key):
        return True
    return not _ascii_alnum(buf[at - 1])


def _ascii_alnum(b: int) -> bool:
    return 48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122


def _encoded_forms(
    key: str, forms: Iterable[tuple[str, ...]], encodings: tuple[str, ...]
) -> Iterator[tuple[bytes, bool]]:
    """Byte strings a needle may be stored as: DICOM ``^`` / space joins, each charset."""
    texts: set[str] = set()
    for parts in forms:
        if len(parts) > 1:
            texts |= {"^".join(parts), " ".join(parts), "".join(parts)}
        else:
            texts.add(parts[0])
    for text in texts:
        variants = {text} if text.isascii() else {text, text.upper(), text.lower()}
        right = is_bounded(key) and is_word_char(text[-1])
        for variant in variants:
            for codec in encodings:
                literal = _encode(variant, codec)
                if literal is not None and len(literal) >= 4:
                    yield literal, right and _ascii_alnum(literal[-1])


def _encode(text: str, codec: str) -> bytes | None:
    try:
        data = text.encode(codec)
    except (UnicodeError, LookupError):
        return None
    for reset in _ISO2022_RESETS:  # the next value may stay in the same character set
        if b"\x1b" in data and data.endswith(reset):
            data = data[: -len(reset)]
    return data


# ------------------------------------------------------------------------- reading
def _files(root: Path, *, reports: bool = False) -> list[Path]:
    """The files under ``root``; safepacs' own run reports only with ``reports``.  A folder to
    be released is searched whole: a report inside it (where an older version wrote it)
    maps input paths, often named after the patient, to their outputs."""
    if root.is_file():
        return [root]
    from safepacs.deid.batch import _is_own_report

    return sorted(p for p in root.rglob("*") if p.is_file() and (reports or not _is_own_report(p.name)))


def _display(path: Path, root: Path) -> str:
    if root.is_file():
        return path.name
    return path.relative_to(root).as_posix()


class _Unreadable(Exception):
    """A file that claims to be DICOM (DICM prefix) but yields no dataset."""


def _read_original(path: Path) -> Dataset | None:
    """The original's dataset; None when it is not DICOM at all (e.g. a README)."""
    try:
        ds = dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        pass
    else:
        if not len(ds):
            raise _Unreadable(path.name)
        return ds
    try:
        ds = dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # pydicom raises many kinds on non-DICOM input
        return None
    return ds if len(ds) and _looks_like_dicom(ds) else None


def _looks_like_dicom(ds: Dataset) -> bool:
    return any(ds.get(k) is not None for k in ("SOPInstanceUID", "SOPClassUID", "PatientID",
                                                 "PatientName", "StudyInstanceUID"))


def _file_options(ds: Dataset | None) -> frozenset[str]:
    """Options the file declares in DeidentificationMethodCodeSequence (CID 7050)."""
    if ds is None:
        return frozenset()
    codes = []
    try:
        for item in ds.get("DeidentificationMethodCodeSequence", None) or []:
            codes.append(str(item.get("CodeValue", "")).strip())
    except Exception:  # a malformed sequence declares nothing
        return frozenset()
    try:
        options = Options.from_codes(codes)
    except ValueError:  # both date options declared: trust neither
        options = Options.from_codes([c for c in codes if c not in ("113106", "113107")])
    return frozenset(options.enabled)


def _file_encodings(ds: Dataset | None) -> tuple[str, ...]:
    if ds is None:
        return _UNPARSED_ENCODINGS
    extra = [] if "SpecificCharacterSet" not in ds else dataset_encodings(ds)
    seen: dict[str, None] = {}
    for codec in (*_BASE_ENCODINGS, *extra):
        try:
            seen.setdefault(codecs.lookup(codec).name, None)
        except LookupError:
            continue
    return tuple(seen)


def _bulk_end(buf: bytes | mmap.mmap, start: int, little: bool) -> int:
    """End of the Pixel Data element at ``start`` (native or encapsulated)."""
    size = len(buf)
    u32 = "<I" if little else ">I"
    if start + 8 > size:
        return size
    explicit = bytes(buf[start + 4 : start + 6]) in (b"OB", b"OW", b"OF", b"OD", b"OL", b"UN")
    header = 12 if explicit else 8
    if start + header > size:
        return size
    length = struct.unpack(u32, buf[start + header - 4 : start + header])[0]
    pos = start + header
    if length != _UNDEFINED:
        return min(size, pos + length)
    item, delimiter = (b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0") if little else (
        b"\xff\xfe\xe0\x00", b"\xff\xfe\xe0\xdd")
    while pos + 8 <= size:
        tag = bytes(buf[pos : pos + 4])
        if tag == delimiter:
            return pos + 8
        if tag != item:
            return size
        pos += 8 + struct.unpack(u32, buf[pos + 4 : pos + 8])[0]
    return size


# ------------------------------------------------------------------------- one deid file
@dataclass
class _Region:
    start: int
    end: int
    path: str
    found: set[str]


@dataclass
class _FileScan:
    """Leaks and byte-region bookkeeping for one de-identified file."""

    index: NeedleIndex
    #: the options the file declares
    enabled: frozenset[str]
    shown: str
    matcher: _Matcher = field(init=False)
    leaks: list[Leak] = field(default_factory=list)
    kept_findings: list[Leak] = field(default_factory=list)
    regions: list[_Region] = field(default_factory=list)
    skips: list[tuple[int, int]] = field(default_factory=list)
    unlocated: Counter = field(default_factory=Counter)
    #: under Modified Dates with the key: the file's patient's days as correctly moved (a
    #: date value that is one of them is explained, whatever needle it also equals)
    shifted_days: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.matcher = self.index.matcher(self.enabled)

    def leak(self, location: str, key_or_kind: str, value: str, *, pattern: bool = False) -> None:
        kind = key_or_kind if pattern else self.matcher.kinds.get(key_or_kind, "other_text")
        self.leaks.append(Leak(self.shown, location, kind, mask(value)))

    def search_text(
        self, path: str, text: str, vr: str, keyword: str = "", where: tuple[int, ...] = ()
    ) -> set[str]:
        """Report the needles in one value of the attribute at ``path`` (``where``: its
        path of tags) and return their keys."""
        found: set[str] = set()
        spans = []
        held = None  # ``text`` normalised if an original held it here as a non-identifying
        # value, else "": asked only when a needle is found
        options = None  # the declared options keeping this attribute's value, likewise

        def judge(start: int, end: int, key: str) -> None:
            nonlocal options
            if vr in ("DA", "DT") and text[:8] in self.shifted_days:
                return  # a correctly moved day that equals another patient's birthday
            kind = self.matcher.kinds.get(key)
            if held and (kind in _VENDOR_KINDS or self.index.vocabulary(key)
                         or self.index.coincidence(where, held, key)):
                return  # InstitutionName "TOSHIBA" inside the Manufacturer "TOSHIBA_MEC"
            if where and self.index.vocabulary_here(where, key):
                return
            if options is None:
                options = self.index.kept_by(keyword, text, self.enabled)
            if options and (kind not in PERSON_KINDS or self.index.waived(key, self.enabled)):
                self.kept_findings.append(Leak(self.shown, path, kind or "other_text",
                                               mask(text[start:end]), ",".join(sorted(options))))
                return
            self.leak(path, key, text[start:end])

        for start, end, key in self.matcher.find_text(text):
            found.add(key)
            spans.append((start, end))
            if held is None:
                value = normalize(text) if where else ""
                held = value if value and self.index.held(where, value) else ""
            if key != held:
                judge(start, end, key)
                continue
            # the whole value, as an original held it in this attribute: it identifies
            # nobody here, but a needle inside it (a surname) is judged as in any kept value
            for inner in self.matcher.inner(key).find_text(text):
                found.add(inner[2])
                judge(*inner)
        if vr in _PATTERN_VRS:
            for kind, (start, end) in find_patterns(text):
                if not any(s < end and start < e for s, e in spans):
                    self.leak(path, kind, text[start:end], pattern=True)
        return found


def _walk_deid(
    ds: Dataset, base: int, prefix: str, encodings: list[str], scan: _FileScan,
    trail: tuple[int, ...] = (),
) -> None:
    """Search every element, recording where each value lies in the file's bytes.

    ``trail``: the tags of the enclosing sequences, as :class:`Value.path` counts them.
    """
    if "SpecificCharacterSet" in ds:
        encodings = dataset_encodings(ds, encodings)
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        start = base + raw.value_tell if isinstance(raw, RawDataElement) else None
        length = raw.length if isinstance(raw, RawDataElement) else _UNDEFINED
        try:
            elem = ds[tag]
        except Exception:  # undecodable: the raw-bytes search covers it
            continue
        private = elem.tag.is_private
        name = elem.keyword if elem.keyword and not private else f"({tag.group:04X},{tag.elem:04X})"
        path = prefix + name
        where = (*trail, int(tag))
        if elem.VR == "SQ":
            inner = start if start is not None else base
            for i, item in enumerate(elem.value or []):
                _walk_deid(item, inner, f"{path}[{i}].", encodings, scan, where)
            continue
        if elem.VR in _BINARY_VRS and not private and tag != _ENCAPSULATED_DOCUMENT:
            if start is not None and length != _UNDEFINED:
                scan.skips.append((start, start + length))  # image data, not text
            continue
        if elem.VR not in TEXT_VRS and elem.VR not in ("UN", "OB"):
            continue
        found: set[str] = set()
        for text in element_texts(elem, encodings):
            keyword = "" if private else elem.keyword
            found |= scan.search_text(path, text, elem.VR, keyword, where)
            if elem.VR == "DT" and len(text) > 8:  # the date inside a date-time
                found |= scan.search_text(path, text[:8], elem.VR)
        if start is not None and length != _UNDEFINED:
            scan.regions.append(_Region(start, start + length, path, found))
        else:
            scan.unlocated.update(found)


def _segments(size: int, skips: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    pos = 0
    for start, end in sorted(skips):
        if start > pos:
            yield pos, min(start, size)
        pos = max(pos, end)
    if pos < size:
        yield pos, size


def _search_raw(
    scan: _FileScan, buf: bytes | mmap.mmap, encodings: tuple[str, ...]
) -> None:
    """Raw bytes, minus image data: what decoding missed (blobs, wrong charsets)."""
    scan.regions.sort(key=lambda r: r.start)
    starts = [r.start for r in scan.regions]
    for seg_start, seg_end in _segments(len(buf), scan.skips):
        for offset, key in scan.matcher.find_bytes(buf, seg_start, seg_end, encodings):
            i = bisect.bisect_right(starts, offset) - 1
            region = scan.regions[i] if i >= 0 and offset < scan.regions[i].end else None
            if region is not None and key in region.found:
                continue
            if region is None and scan.unlocated[key] > 0:
                scan.unlocated[key] -= 1
                continue
            where = f"{region.path} (raw bytes @{offset})" if region else f"raw bytes @{offset}"
            scan.leak(where, key, scan.matcher.display(key))


@contextmanager
def _mapped(fh: BinaryIO) -> Iterator[bytes | mmap.mmap]:
    size = fh.seek(0, 2)
    fh.seek(0)
    if size == 0:
        yield b""
        return
    mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        yield mm
    finally:
        mm.close()


def _parse_deid(fh: BinaryIO) -> tuple[Dataset | None, int | None]:
    """(dataset, offset of Pixel Data or None), or (None, None) when not parseable."""
    try:
        ds = dcmread(fh, stop_before_pixels=True, force=True)
    except Exception:  # unreadable: searched as raw bytes only
        return None, None
    if not getattr(ds, "preamble", None) and not _looks_like_dicom(ds):
        return None, None  # force=True reads anything; this was not DICOM
    return ds, fh.tell()


def _check_file(
    path: Path, relative: str, shown: str, index: NeedleIndex,
    patient_dates: dict[str, PatientDates] | None = None,
) -> tuple[list[Leak], list[Leak], bool]:
    """Leaks in one de-identified file, findings kept by its declared options, and whether
    it parsed as DICOM.

    ``relative`` is the path searched for identifiers; ``shown`` its masked form.
    """
    with path.open("rb") as fh:
        ds, pixel_at = _parse_deid(fh)
        enabled = _enabled(ds, patient_dates)
        per_patient = PER_PATIENT_DATES in enabled
        scan = _FileScan(index, enabled, shown)
        if per_patient and ds is not None:
            assert patient_dates is not None
            own = patient_dates.get(str(ds.get("PatientID", "") or "").strip())
            if own is not None:
                scan.shifted_days = own.shifted
                _check_patient_dates(ds, own, scan)
        ts = ""
        if ds is not None:
            meta = getattr(ds, "file_meta", None)
            ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
            if meta is not None:
                _walk_deid(meta, 0, "", ["iso8859"], scan)
            _walk_deid(ds, 0, "", dataset_encodings(ds), scan)
        with _mapped(fh) as buf:
            if ts != _DEFLATED:  # deflated bodies hold no plain bytes to search
                if pixel_at is not None and pixel_at < len(buf):
                    scan.skips.append((pixel_at, _bulk_end(buf, pixel_at, ts != _BIG_ENDIAN)))
                _search_raw(scan, buf, _file_encodings(ds))
    for start, end, key in scan.matcher.find_text(relative):
        scan.leak("file path", key, relative[start:end])
    return _dedupe(scan.leaks), _dedupe(scan.kept_findings), ds is not None


def _enabled(ds: Dataset | None, patient_dates: dict[str, PatientDates] | None) -> frozenset[str]:
    """What a de-identified file may keep: the options it declares, and (under Modified
    Dates, with the key) the check of its patient's own dates."""
    enabled = _file_options(ds)
    if patient_dates is not None and "retain_long_modified_dates" in enabled:
        enabled = enabled | {PER_PATIENT_DATES}
    return enabled


def _compile_for(path: Path, originals: Originals) -> None:
    """Compile the search for the options ``path`` declares (a release's files mostly share
    them), so that forked workers inherit it rather than each build it (a second or more
    for a few thousand needles)."""
    try:
        with path.open("rb") as fh:
            ds, _ = _parse_deid(fh)
    except OSError:
        return  # reported when the file is searched
    originals.index.matcher(_enabled(ds, originals.dates))


@dataclass
class PatientDates:
    """One patient's days in the originals, and the same days moved back by the patient's
    offset: what the de-identified files hold under Modified Dates."""

    original: set[str] = field(default_factory=set)
    shifted: set[str] = field(default_factory=set)


def _check_patient_dates(ds: Dataset, own: PatientDates, scan: _FileScan) -> None:
    """Under Modified Dates, the patient's own original dates must not appear in any date.

    A date that is one of the patient's days correctly moved is explained whatever else it
    equals: with offsets of up to ten years, a study moved back by the patient's offset
    lands now and then on the day of an earlier study (or on another patient's birthday),
    and a correctly shifted file was reported as leaking it.  The value tells a reader
    nothing more than any shifted date does."""
    for elem, day in _days(ds):
        if day in own.original and day not in own.shifted:
            scan.leak(elem.keyword or str(elem.tag), "date", day)


def _days(ds: Dataset) -> Iterator[tuple[DataElement, str]]:
    """The calendar day (YYYYMMDD) of every DA and DT value, at any depth.  An element that
    does not decode (a wrong length, seen in files from the wild) holds no day to compare
    and is passed over, instead of ending the whole check."""
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
            if elem.VR == "SQ":
                items = list(elem.value)
            elif elem.VR in ("DA", "DT") and not elem.is_empty:
                values = [str(v) for v in (elem.value if elem.VM > 1 else [elem.value])]
            else:
                continue
        except Exception:  # noqa: BLE001 - pydicom raises many kinds on malformed values
            continue
        if elem.VR == "SQ":
            for item in items:
                yield from _days(item)
            continue
        for value in values:
            if len(value) >= 8:
                yield elem, value[:8]


def _remember_dates(ds: Dataset, keys: Keys, found: dict[str, PatientDates]) -> None:
    """Add the original ``ds``'s days to its patient's, under the pseudonym the key gives."""
    from safepacs.deid.actions import shift_date
    from safepacs.deid.engine import patient_key, patient_pseudonym

    try:
        pseudonym = patient_pseudonym(ds, keys)
        offset = keys.date_offset_days(patient_key(ds))
    except Exception:  # noqa: BLE001 - a PatientID that does not decode: deid refused
        return  # the file, so no output carries its pseudonym
    days = {day for _, day in _days(ds)}
    entry = found.setdefault(pseudonym, PatientDates())
    entry.original |= days
    entry.shifted |= {shift_date(day, offset) for day in days}


def _dedupe(leaks: list[Leak]) -> list[Leak]:
    return list(dict.fromkeys(leaks))


# ------------------------------------------------------------------------- the run
def _require(path: Path, role: str, *, reports: bool = False) -> list[Path]:
    if not path.exists():
        raise VerifyInputError(f"{role} not found: {path}")
    files = _files(path, reports=reports)
    if not files:
        raise VerifyInputError(f"{role} contains no files: {path}")
    return files


#: ``on_progress(phase, done, total)``: a run's progress, for a bar
Progress = Callable[[str, int, int], None]


@dataclass
class Originals:
    """What one reading of the originals gives the search: the needles, each original by the
    SOP Instance UID its de-identified copy carries (for the pixel check), and, with the key,
    each patient's dates (for Modified Dates)."""

    index: NeedleIndex
    result: VerifyResult
    by_uid: dict[str, Path]
    dates: dict[str, PatientDates] | None
    #: the one original, when there is one: the pixels of a copy whose UID was replaced
    #: (without the key, it cannot be matched) are read against it
    only: Path | None = None


def read_originals(original: Path, keys: Keys | None = None,
                   on_progress: Progress | None = None) -> Originals:
    """Read every original under ``original`` (file or folder tree) once."""
    result = VerifyResult()
    index = NeedleIndex()
    by_uid: dict[str, Path] = {}
    dates: dict[str, PatientDates] | None = {} if keys is not None else None
    unreadable: list[Path] = []
    paths = _require(original, "ORIGINAL")
    for done, path in enumerate(paths, 1):
        if on_progress:
            on_progress("reading originals", done, len(paths))
        try:
            ds = _read_original(path)
        except Exception:  # a DICOM file we cannot parse
            unreadable.append(path)
            continue
        if ds is None:
            result.originals_skipped += 1
            continue
        # a declaration spelled otherwise, or text in another set than declared: its values
        # as de-identification reads them, as well as as declared (safepacs.deid.mislabelled);
        # copied before anything is decoded, rather than read from disk again
        mislabelled = standard_terms(ds) is not None or written_in(ds) is not None
        again = copy.deepcopy(ds) if mislabelled else None
        _remember_uid(ds, path, keys, by_uid)
        if dates is not None:
            assert keys is not None
            _remember_dates(ds, keys, dates)
        try:
            patient = index.patient_of(ds)
            index.add_dataset(ds, patient)
            if again is not None and read_as_written(again) is not None:
                index.add_dataset(again, patient)
        except Exception:  # noqa: BLE001 - its identity may be only partly collected
            unreadable.append(path)
            continue
        result.originals_read += 1
    if unreadable:
        shown = index.matcher(frozenset())
        names = ", ".join(shown.mask_text(_display(p, original)) for p in unreadable[:5])
        more = f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        # its identity cannot be collected, so the run cannot be called clean; the other
        # originals are still searched for, so that their leaks are reported too
        result.errors.append(f"{len(unreadable)} original file(s) could not be read as DICOM "
                             f"(their identity was not searched for): {names}{more}")
    if not result.originals_read:
        raise VerifyInputError(f"ORIGINAL holds no readable DICOM files: {original}")
    result.needles = len(index)
    only = paths[0] if len(paths) == 1 else None
    return Originals(index, result, by_uid, dates, only)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence pydicom while reading: its warnings quote element values, which are PHI."""
    logger = logging.getLogger("pydicom")
    disabled, mode = logger.disabled, config.settings.reading_validation_mode
    logger.disabled = True
    config.settings.reading_validation_mode = config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = disabled
        config.settings.reading_validation_mode = mode


def verify_paths(original: Path, deid: Path, keys: Keys | None = None, *, workers: int = 1,
                 on_progress: Progress | None = None) -> VerifyResult:
    """Search every de-identified file under ``deid`` for every needle of ``original``.

    With the de-identification ``keys``, dates shifted under Modified Dates are checked
    per patient (without, another patient's original date may coincide with a shifted one).
    ``workers`` processes search the de-identified files (the originals are read once, here);
    the result is the same whatever their number.
    Raises :class:`VerifyInputError` when either input is missing, empty or unreadable.
    """
    with _quiet():
        return _verify(Path(original), Path(deid), keys, workers, on_progress)


@dataclass
class _Outcome:
    """What searching one de-identified file found."""

    leaks: list[Leak]
    kept: list[Leak]
    parsed: bool = True  # as DICOM (an unparsed file is still searched as bytes)
    error: str | None = None
    pixels_checked: bool = False
    read: bool = True  # False: the file could not be read at all (``error`` says so)


#: what the workers search with (set before they are forked: see :mod:`safepacs.parallel`)
_search: tuple[Path, Originals] | None = None


def _verify(original: Path, deid: Path, keys: Keys | None = None, workers: int = 1,
            on_progress: Progress | None = None) -> VerifyResult:
    global _search
    from safepacs.parallel import ordered_map

    deid_files = _require(deid, "DEID", reports=True)  # the release is searched whole
    originals = read_originals(original, keys, on_progress)
    result = originals.result
    originals.index.matcher(frozenset())  # compiled once, before the workers are forked
    if workers > 1:
        _compile_for(deid_files[0], originals)
    _search = (deid, originals)
    try:
        for done, outcome in enumerate(ordered_map(_search_one, deid_files, workers), 1):
            if on_progress:
                on_progress("searching de-identified files", done, len(deid_files))
            if outcome.error is not None:
                result.errors.append(outcome.error)
            if outcome.pixels_checked:
                result.pixel_files_checked += 1
            if not outcome.read:
                continue
            result.leaks += outcome.leaks
            result.kept += outcome.kept
            result.files_checked += 1
            result.unparsed_files += 0 if outcome.parsed else 1
    finally:
        _search = None
    return result


def _search_one(path: Path) -> _Outcome:
    assert _search is not None
    deid, originals = _search
    relative = _display(path, deid)
    shown = originals.index.matcher(frozenset()).mask_text(relative)
    try:
        leaks, kept, parsed = _check_file(path, relative, shown, originals.index, originals.dates)
        outcome = _Outcome(leaks, kept, parsed)
        if parsed:
            _check_pixels(path, shown, originals, outcome)
    except OSError as exc:
        return _Outcome([], [], error=f"{shown}: cannot read ({exc.__class__.__name__})", read=False)
    return outcome


# ------------------------------------------------------------------ burned-in text
def _remember_uid(ds: Dataset, path: Path, keys: Keys | None, found: dict[str, Path]) -> None:
    """The original ``path`` under the SOP Instance UID its de-identified copy carries: the
    same UID (Retain UIDs) and, with the key, the keyed one."""
    try:
        uid = str(ds.get("SOPInstanceUID", "") or "")
    except Exception:  # noqa: BLE001 - reported by the index when it reads the file
        return
    if uid:
        found[uid] = path
        if keys is not None:
            found[keys.uid(uid)] = path


def _pixels_at_risk(ds: Dataset) -> bool:
    """OCR the pixels of files that were cleaned (113101) or may carry burned-in text."""
    from safepacs.deid.burnedin import burned_in_risk

    codes = {str(item.get("CodeValue", "")) for item in ds.get("DeidentificationMethodCodeSequence", [])}
    return CLEAN_PIXEL_DATA_CODE[0] in codes or burned_in_risk(ds) is not None


def _check_pixels(path: Path, shown: str, originals: Originals, outcome: _Outcome) -> None:
    """Identity still legible in the pixels (rule names only; the text is never shown).

    The original header (found by UID) supplies the values to look for; without it the
    pattern rules alone apply (labelled names, ID numbers, dates).
    """
    head = dcmread(path, stop_before_pixels=True, force=True)
    if not _pixels_at_risk(head) or "Rows" not in head or "Columns" not in head:
        return
    try:
        from safepacs.deid.pixels.clean import frames_to_examine
        from safepacs.deid.pixels.findings import legible_identity
        from safepacs.deid.pixels.frames import display_frame, stored_frames

        ds = dcmread(path, force=True)
        if "PixelData" not in ds:
            return
        source = originals.by_uid.get(str(ds.get("SOPInstanceUID", "") or "")) or originals.only
        header = (_read_original(source) if source is not None else None) or Dataset()
        stored = stored_frames(ds)
        rules: set[tuple[int, str]] = set()
        for index in frames_to_examine(stored.layout.frames):
            for rule in legible_identity(display_frame(stored, index, ds), header):
                rules.add((index, rule))
    except (SafepacsError, ImportError, ValueError) as exc:
        outcome.error = f"{shown}: pixels cannot be checked ({_safe_reason(exc)})"
        return
    outcome.pixels_checked = True
    outcome.leaks += [Leak(shown, f"pixel data, frame {index + 1}", f"burned-in {rule}", "(legible in pixels)")
                      for index, rule in sorted(rules)]


def _safe_reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, SafepacsError) else exc.__class__.__name__


def _leak_table(leaks: list[Leak], title: str = "Identifying values found in de-identified files",
                kept: bool = False) -> Table:
    table = Table(title=title, show_lines=False)
    columns = ("File", "Attribute", "Kind", "Value (masked)") + (("Kept by",) if kept else ())
    for column in columns:
        table.add_column(column, overflow="fold")
    for leak in leaks[:_MAX_TABLE_ROWS]:
        cells = (leak.deid_file, leak.location, leak.kind, leak.masked) + ((leak.kept_by,) if kept else ())
        table.add_row(*map(Text, cells))
    return table


def write_report(result: VerifyResult, report: Path) -> None:
    """JSON report of a run: counts and masked leaks, nothing identifying."""
    payload = {
        "tool": "safepacs verify-deid",
        "result": "leaks" if result.leaks else ("incomplete" if result.errors else "clean"),
        "files_checked": result.files_checked,
        "originals_read": result.originals_read,
        "originals_skipped_not_dicom": result.originals_skipped,
        "unparsed_deid_files": result.unparsed_files,
        "needles": result.needles,
        "leak_count": len(result.leaks),
        "leaks_by_kind": dict(Counter(leak.kind for leak in result.leaks)),
        "errors": result.errors,
        "leaks": [asdict(leak) for leak in result.leaks],
        "kept_by_declared_options_count": len(result.kept),
        "kept_by_declared_options": [asdict(leak) for leak in result.kept],
    }
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def run_verify(
    original: Path, deid: Path, *, console: Console, report: Path | None = None,
    keys: Keys | None = None, strict: bool = False, workers: int = 1,
    bars: Callable[[], Any] | None = None,
) -> int:
    """The ``verify-deid`` command: print leaks, write the report, return the exit code.

    0: no leak; 1: at least one leak; 2: no leak found, but an input is missing or
    unreadable (an unreadable original's identity could not be searched for).
    ``strict``: findings inside attributes kept by a declared option count as leaks too.
    ``bars``: makes the progress bars (a ``rich.progress.Progress``), shown while it runs.
    """
    from safepacs.cli_output import NoProgress

    try:
        with (bars or NoProgress)() as shown:
            phases: dict[str, Any] = {}

            def advance(phase: str, done: int, total: int) -> None:
                if phase not in phases:
                    phases[phase] = shown.add_task(phase, total=total)
                shown.update(phases[phase], completed=done)

            result = verify_paths(original, deid, keys, workers=workers, on_progress=advance)
    except VerifyInputError as exc:
        console.print(Text("error: ", style="bold red") + Text(str(exc)))
        return 2
    if strict:
        result.leaks, result.kept = result.leaks + [replace(k, kept_by="") for k in result.kept], []
    _print_result(console, result)
    if report is not None:
        try:
            write_report(result, Path(report))
        except OSError as exc:
            console.print(Text(f"error: cannot write report {report} ({exc.strerror})",
                               style="bold red"))
            return 2
        console.print(Text(f"report written to {report}"))
    if result.leaks:
        return 1
    return 2 if result.errors else 0


def _print_result(console: Console, result: VerifyResult) -> None:
    if result.originals_skipped:
        console.print(Text(f"note: skipped {result.originals_skipped} non-DICOM file(s) "
                           "in ORIGINAL", style="yellow"))
    if result.unparsed_files:
        console.print(Text(f"note: {result.unparsed_files} de-identified file(s) are not "
                           "parseable DICOM; their raw bytes were searched", style="yellow"))
    for error in result.errors:
        console.print(Text("error: ", style="bold red") + Text(error))
    if result.pixel_files_checked:
        console.print(Text(f"pixels of {result.pixel_files_checked} file(s) read by OCR for "
                           "burned-in identity"))
    files = f"{result.files_checked} file{'s' if result.files_checked != 1 else ''}"
    if result.kept:
        console.print(_leak_table(result.kept, "Found inside attributes that a declared option keeps "
                                  "(not counted; --strict counts them)", kept=True))
    if not result.leaks:
        if not result.errors:
            console.print(Text(f"0 leaks in {files}", style="bold green"))
        return
    console.print(_leak_table(result.leaks))
    if len(result.leaks) > _MAX_TABLE_ROWS:
        console.print(Text(f"... and {len(result.leaks) - _MAX_TABLE_ROWS} more "
                           "(write them all with --report)", style="yellow"))
    affected = len({leak.deid_file for leak in result.leaks})
    console.print(Text(f"{len(result.leaks)} leak{'s' if len(result.leaks) != 1 else ''} "
                       f"in {affected} of {files}", style="bold red"))
