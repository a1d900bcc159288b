"""QIDO-RS query parameters (PS3.18 8.3.4) to the archive's search arguments.

Pure: takes the decoded ``(name, value)`` pairs of the query string, returns a ``Query`` or
raises ``QueryError`` (a ValueError) naming the parameter (never echoing a value).  Attributes may be named
by keyword (``PatientName``) or tag (``00100010``); a repeated attribute or a comma-separated
UID list becomes a backslash-separated list, the DICOM form the archive matches on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from safepacs.index.query import QueryError

MAX_LIMIT = 10_000
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_FORBIDDEN = frozenset({"access_token", "token", "apikey", "api_key"})


@dataclass(frozen=True)
class Query:
    filters: dict[str, str | list[str]] = field(default_factory=dict)
    include: tuple[str, ...] = ()
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False


def keyword_of(name: str) -> str:
    """``PatientName`` or ``00100010`` -> ``PatientName``; ValueError if unknown."""
    if _TAG.match(name):
        kw = keyword_for_tag(int(name, 16))
        if not kw:
            raise QueryError(f"unknown attribute tag {name.upper()}")
        return kw
    if "." in name:
        raise QueryError("sequence attribute paths are not supported in queries")
    if tag_for_keyword(name) is None:
        raise QueryError("unknown attribute keyword in query")
    return name


def parse(pairs: Iterable[tuple[str, str]]) -> Query:
    filters: dict[str, list[str]] = {}
    include: list[str] = []
    include_all = False
    limit: int | None = None
    offset = 0
    fuzzy = False
    for name, value in pairs:
        lname = name.lower()
        if lname in _FORBIDDEN:
            raise QueryError("credentials are not accepted in URLs; use the Authorization header")
        if lname == "limit":
            limit = _int(value, "limit", 0, MAX_LIMIT)
        elif lname == "offset":
            offset = _int(value, "offset", 0, 10**9)
        elif lname == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise QueryError("fuzzymatching must be true or false")
            fuzzy = value.lower() == "true"
        elif lname == "includefield":
            for item in value.split(","):
                item = item.strip()
                if not item:
                    continue
                if item.lower() == "all":
                    include_all = True
                else:
                    include.append(keyword_of(item))
        else:
            kw = keyword_of(name)
            if "\x00" in value or len(value) > 1024:
                raise QueryError(f"query value for {kw} is malformed")
            filters.setdefault(kw, []).append(value)
    return Query(
        filters={kw: _join(kw, vals) for kw, vals in filters.items()},
        include=tuple(dict.fromkeys(include)),
        include_all=include_all,
        limit=limit,
        offset=offset,
        fuzzy=fuzzy,
    )


def _join(keyword: str, values: list[str]) -> str | list[str]:
    if dictionary_VR(keyword) == "UI":
        parts = [p.strip() for v in values for p in re.split(r"[,\\]", v) if p.strip()]
        return "\\".join(parts)
    return values if len(values) > 1 else values[0]


def _int(value: str, name: str, lo: int, hi: int) -> int:
    if not value.isdigit():
        raise QueryError(f"{name} must be a non-negative integer")
    n = int(value)
    if not lo <= n <= hi:
        raise QueryError(f"{name} must be between {lo} and {hi}")
    return n
