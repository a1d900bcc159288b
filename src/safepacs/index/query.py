"""DICOM query matching (PS3.4 C.2.2.2) turned into SQL over the index.

Supported: universal matching (empty value), single value, wildcards ``*`` and ``?``,
UID list matching (``a\\b``, no wildcards), date and time ranges (``A-B``, ``-B``, ``A-``),
value lists for coded strings, and PN matching.  PN matching is case-insensitive (as most
archives do, and as PS3.4 allows "literal or case-insensitive" for PN); other text is
case-sensitive as the standard says.  Malformed filters raise ``QueryError`` (a ValueError) with a message
that names the attribute, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from sqlalchemy import ColumnElement, Select, and_, func, or_, select, true

from safepacs.index.models import Instance, Patient, Series, Study

LEVELS = ("study", "series", "instance")
_LEVEL_RANK = {"patient": 0, "study": 0, "series": 1, "instance": 2}
_TABLES = {"patient": Patient, "study": Study, "series": Series, "instance": Instance}


class QueryError(ValueError):
    """A malformed query.  Its message names the problem and at most the caller's own
    parameter, never a stored value, so it may be shown to the caller (400, DICOM status)."""


@dataclass(frozen=True)
class Attr:
    keyword: str
    level: str  # patient, study, series, instance
    column: str
    kind: str  # UI, DA, TM, PN, CS, TEXT, INT, MODS
    vr: str
    searchable: bool = True


ATTRS: dict[str, Attr] = {
    a.keyword: a
    for a in (
        Attr("PatientName", "patient", "patient_name", "PN", "PN"),
        Attr("PatientID", "patient", "patient_id", "TEXT", "LO"),
        Attr("PatientBirthDate", "patient", "birth_date", "DA", "DA"),
        Attr("PatientSex", "patient", "sex", "CS", "CS"),
        Attr("StudyInstanceUID", "study", "study_uid", "UI", "UI"),
        Attr("StudyDate", "study", "study_date", "DA", "DA"),
        Attr("StudyTime", "study", "study_time", "TM", "TM"),
        Attr("AccessionNumber", "study", "accession_number", "TEXT", "SH"),
        Attr("StudyID", "study", "study_id", "TEXT", "SH"),
        Attr("StudyDescription", "study", "study_description", "TEXT", "LO"),
        Attr("ReferringPhysicianName", "study", "referring_physician_name", "PN", "PN"),
        Attr("ModalitiesInStudy", "study", "modalities", "MODS", "CS"),
        Attr("NumberOfStudyRelatedSeries", "study", "num_series", "INT", "IS", False),
        Attr("NumberOfStudyRelatedInstances", "study", "num_instances", "INT", "IS", False),
        Attr("SeriesInstanceUID", "series", "series_uid", "UI", "UI"),
        Attr("Modality", "series", "modality", "CS", "CS"),
        Attr("SeriesNumber", "series", "series_number", "INT", "IS"),
        Attr("SeriesDescription", "series", "series_description", "TEXT", "LO"),
        Attr("NumberOfSeriesRelatedInstances", "series", "num_instances", "INT", "IS", False),
        Attr("SOPInstanceUID", "instance", "sop_uid", "UI", "UI"),
        Attr("SOPClassUID", "instance", "sop_class_uid", "UI", "UI"),
        Attr("InstanceNumber", "instance", "instance_number", "INT", "IS"),
        Attr("Rows", "instance", "rows", "INT", "US"),
        Attr("Columns", "instance", "columns", "INT", "US"),
        Attr("BitsAllocated", "instance", "bits_allocated", "INT", "US"),
        Attr("NumberOfFrames", "instance", "number_of_frames", "INT", "IS"),
    )
}

#: QIDO-RS return attributes per level (PS3.18 Table 6.7.1-2, -2a, -2b), of those indexed.
RETURN_ATTRS: dict[str, tuple[str, ...]] = {
    "study": (
        "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    ),
    "series": (
        "StudyInstanceUID", "Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
    ),
    "instance": (
        "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "InstanceNumber",
        "Rows", "Columns", "BitsAllocated", "NumberOfFrames",
    ),
}

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_DATE = re.compile(r"[0-9]{8}")
_TIME = re.compile(r"[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?")


def keyword(key: str) -> str:
    """A filter key as a keyword: ``PatientName``, or its tag ``00100010``."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", key):
        kw = keyword_for_tag(int(key, 16))
        if kw:
            return kw
    return key


def attr(key: str) -> Attr:
    kw = keyword(key)
    if kw not in ATTRS:
        raise QueryError(f"query attribute {kw[:64]!r} is not supported")
    return ATTRS[kw]


def check_uid(value: str, what: str = "UID") -> str:
    """A syntactically valid UID (digits and dots, 64 characters at most)."""
    if not (0 < len(value) <= 64 and _UID.fullmatch(value)):
        raise QueryError(f"{what} is not a valid UID")
    return value


def uid_list(value: str, what: str) -> list[str]:
    return [check_uid(v, what) for v in value.split("\\")]


def has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def like_pattern(value: str) -> str:
    """DICOM wildcards to an SQL LIKE pattern with ``\\`` as the escape character."""
    out = []
    for ch in value:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _range(value: str, what: str, pattern: re.Pattern[str], form: str) -> tuple[str, str]:
    """Split a DICOM range ``A``, ``A-B``, ``-B`` or ``A-`` and check both ends."""
    lo, sep, hi = value.partition("-")
    if not sep:
        hi = lo
    for part in (lo, hi):
        if part and not pattern.fullmatch(part):
            raise QueryError(f"{what}: {form}")
    if not lo and not hi:
        raise QueryError(f"{what}: an empty range")
    return lo, hi


def date_range(value: str, what: str) -> tuple[str | None, str | None]:
    """``A``, ``A-B``, ``-B`` or ``A-`` (YYYYMMDD; ISO ``YYYY-MM-DD`` is not DICOM)."""
    lo, hi = _range(value, what, _DATE, "dates must be YYYYMMDD, or a range A-B, -B, A-")
    if lo and hi and lo > hi:
        raise QueryError(f"{what}: range start is after its end")
    return lo or None, hi or None


def time_range(value: str, what: str) -> tuple[str | None, str | None]:
    lo, hi = _range(value, what, _TIME, "times must be HHMMSS (or a range of them)")
    return lo or None, (hi + "\x7f") if hi else None  # "1030" covers 103000..103059.999


def _text_match(col, value: str, *, ci: bool) -> ColumnElement[bool]:  # type: ignore[no-untyped-def]
    target = func.upper(col) if ci else col
    val = value.upper() if ci else value
    if has_wildcard(val):
        if val.strip("*") == "":
            return true()
        return target.like(like_pattern(val), escape="\\")
    return target == val


def condition(a: Attr, value: str | list[str]) -> ColumnElement[bool] | None:
    """The SQL condition of one filter; None for universal matching."""
    values = value if isinstance(value, list) else [value]
    conds = []
    for raw in values:
        if not isinstance(raw, str):
            raise QueryError(f"{a.keyword}: value must be text")
        v = raw.strip()
        if v == "":
            continue
        col = getattr(_TABLES[a.level], a.column)
        if a.kind == "UI":
            if has_wildcard(v):
                raise QueryError(f"{a.keyword}: wildcards are not allowed in UIDs")
            conds.append(col.in_(uid_list(v, a.keyword)))
        elif a.kind == "DA":
            lo, hi = date_range(v, a.keyword)
            parts = [col != ""]
            if lo:
                parts.append(col >= lo)
            if hi:
                parts.append(col <= hi)
            conds.append(and_(*parts))
        elif a.kind == "TM":
            lo, hi = time_range(v, a.keyword)
            parts = [col != ""]
            if lo:
                parts.append(col >= lo)
            if hi:
                parts.append(col <= hi)
            conds.append(and_(*parts))
        elif a.kind == "INT":
            try:
                conds.append(col.in_([int(x) for x in v.split("\\")]))
            except ValueError:
                raise QueryError(f"{a.keyword}: must be an integer") from None
        elif a.kind == "MODS":
            mods = v.split("\\")
            ors = []
            for mod in mods:
                if "|" in mod or "%" in mod:
                    raise QueryError(f"{a.keyword}: invalid modality")
                ors.append(col.like("%|" + like_pattern(mod) + "|%", escape="\\"))
            conds.append(or_(*ors))
        elif a.kind == "PN":
            conds.append(_text_match(col, v, ci=True))
        else:  # TEXT, CS: value lists (backslash), wildcards, case-sensitive
            conds.append(or_(*[_text_match(col, x, ci=False) for x in v.split("\\")]))
    if not conds:
        return None
    return or_(*conds) if len(conds) > 1 else conds[0]


def return_attributes(level: str, include: Sequence[str] = (), *, scoped: bool = False) -> list[str]:
    """Keywords a QIDO result carries: the level's required ones, those of the levels above
    when the search is not scoped to a study (PS3.18 6.7.1.2.2), and ``include`` (``all``:
    every indexed attribute of the level and above).  An include that is a DICOM keyword
    the index does not hold is ignored; one that is no DICOM keyword is a ValueError."""
    wanted = list(RETURN_ATTRS[level])
    if level != "study" and not scoped:
        wanted = list(RETURN_ATTRS["study"]) + wanted
    if level == "instance" and not scoped:
        wanted += list(RETURN_ATTRS["series"])
    rank = _LEVEL_RANK[level]
    for item in include:
        if item == "all":
            wanted += [k for k, a in ATTRS.items() if _LEVEL_RANK[a.level] <= rank]
            continue
        kw = keyword(item)
        if kw in ATTRS:
            if _LEVEL_RANK[ATTRS[kw].level] <= rank:
                wanted.append(kw)
        elif tag_for_keyword(kw) is None:
            raise QueryError(f"includefield {kw[:64]!r} is not a DICOM attribute")
    return list(dict.fromkeys(wanted))


def base_select(level: str) -> Select:
    """Rows for ``level`` joined with their parents (patient, study, series)."""
    if level == "study":
        return select(Study, Patient).join(Patient, Study.patient_pk == Patient.pk)
    if level == "series":
        return (
            select(Series, Study, Patient)
            .join(Study, Series.study_pk == Study.pk)
            .join(Patient, Study.patient_pk == Patient.pk)
        )
    if level == "instance":
        return (
            select(Instance, Series, Study, Patient)
            .join(Series, Instance.series_pk == Series.pk)
            .join(Study, Series.study_pk == Study.pk)
            .join(Patient, Study.patient_pk == Patient.pk)
        )
    raise QueryError(f"query level must be one of {', '.join(LEVELS)}")


def build(
    level: str,
    filters: Mapping[str, str | list[str]],
    *,
    extra: Iterable[ColumnElement[bool]] = (),
    limit: int | None = None,
    offset: int = 0,
) -> Select:
    """A SELECT for a QIDO search; ``extra`` holds conditions the caller adds (scope,
    identity-index matches)."""
    if limit is not None and limit < 0 or offset < 0:
        raise QueryError("limit and offset must not be negative")
    stmt = base_select(level)
    for key, value in filters.items():
        a = attr(key)
        if _LEVEL_RANK[a.level] > _LEVEL_RANK[level]:
            raise QueryError(f"{a.keyword} is not an attribute of the {level} level")
        if not a.searchable:
            raise QueryError(f"{a.keyword} cannot be used as a filter")
        cond = condition(a, value)
        if cond is not None:
            stmt = stmt.where(cond)
    for cond in extra:
        stmt = stmt.where(cond)
    table = _TABLES[level]
    stmt = stmt.order_by(table.pk).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt


# --- PN matching in memory (for the decrypted identity index) ---------------------------
def pn_matches(query: str, value: str, *, fuzzy: bool = False) -> bool:
    """Does a PN query match a PN value?  Case-insensitive; ``*``/``?`` wildcards; the
    query matches the whole value or any one component group (alphabetic, ideographic,
    phonetic), so ``ZHANG^WEI`` and ``张^伟`` both find ``ZHANG^WEI=张^伟``.  Trailing empty
    components are ignored.  ``fuzzy`` also matches when every query word starts a word of
    the value, in any order."""
    q = _pn_norm(query)
    if not q:
        return True
    candidates = [_pn_norm(value)] + [_pn_norm(g) for g in value.split("=") if g]
    pattern = re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in q), re.DOTALL
    )
    if any(pattern.fullmatch(c) for c in candidates):
        return True
    if fuzzy:
        words = [w for w in re.split(r"[\^ =,]+", q) if w]
        have = [w for w in re.split(r"[\^ =,]+", _pn_norm(value)) if w]
        return bool(words) and all(any(h.startswith(w.rstrip("*")) for h in have) for w in words)
    return False


def _pn_norm(value: str) -> str:
    groups = [("^".join(c.strip() for c in g.split("^"))).rstrip("^") for g in value.split("=")]
    return "=".join(groups).rstrip("=").upper()
