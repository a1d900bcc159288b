"""Access levels as data: what a reader at each level gets to see.

A level is a small set of rules, one per part of the object, so that one renderer serves
every level and a site can add levels (edited by the security administrator) without
code.  The built-ins live in ``render/data/levels.json``; site levels, of the same shape, in
the index database (``safepacs.access.levels``: versioned, audited, security administrator
only), or in a file for ``load_levels``.  Loading validates everything and refuses what it
does not understand: an unknown key or value could otherwise widen what a reader sees (fail
closed).

Rules (``header`` decides which others are allowed):

* ``header``: ``original`` (the identity delta re-applied) or ``deidentified`` (the stored
  header), optionally cut down to ``keep`` (keywords; ``empty`` ones are written empty so
  Type 2 attributes stay present).
* ``uids``: ``original`` | ``stored`` (the archive's) | ``project`` (re-keyed per project) |
  ``fresh`` (new per request: links to nothing outside it).
* ``dates``: ``original`` | ``stored`` | ``project`` (original dates shifted per patient and
  project) | ``year`` (1 January of the original year) | ``remove`` (emptied).
* ``pixels``: ``original`` (burned-in text restored) | ``cleaned`` (as stored).
* ``watermark``: forensic pixel mark on; ``private_mark``: issuance in a private element.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pydicom.datadict import tag_for_keyword

from safepacs.errors import SafepacsError

BUILT_IN = ("identified", "pseudonymised", "anonymised", "deidentified")
HEADERS = ("original", "deidentified")
UIDS = ("original", "stored", "project", "fresh")
DATES = ("original", "stored", "project", "year", "remove")
PIXELS = ("original", "cleaned")
_KEYS = {"header", "uids", "dates", "pixels", "watermark", "private_mark", "keep", "empty", "description"}
_REQUIRED = {"header", "uids", "dates", "pixels", "watermark"}
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class LevelError(SafepacsError):
    """A level definition that cannot be used safely."""


@dataclass(frozen=True)
class Level:
    name: str
    header: str
    uids: str
    dates: str
    pixels: str
    watermark: bool
    private_mark: bool = False
    keep: tuple[str, ...] | None = None
    empty: tuple[str, ...] = ()
    description: str = ""
    #: which definition this is ("" for built-ins; for site levels "<version>:<digest>"):
    #: part of every render cache key, so a changed level never serves an older copy
    version: str = ""

    @property
    def cache_name(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name

    @property
    def needs_delta(self) -> bool:
        """Whether rendering reads the identity delta (the caller decrypts it only then)."""
        return self.header == "original" or self.dates in ("project", "year") or self.pixels == "original"

    @property
    def needs_project(self) -> bool:
        return "project" in (self.uids, self.dates)

    @property
    def keep_tags(self) -> frozenset[int]:
        return frozenset(int(tag_for_keyword(k)) for k in self.keep or ())  # type: ignore[arg-type]

    @property
    def empty_tags(self) -> frozenset[int]:
        return frozenset(int(tag_for_keyword(k)) for k in self.empty)  # type: ignore[arg-type]


def parse_level(name: str, doc: object) -> Level:
    """One level from its JSON object; :class:`LevelError` (naming the level and rule,
    never echoing a long value) when anything is unknown, missing or inconsistent."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise LevelError("level name must be 1-32 lower-case letters, digits, '-' or '_'")
    if not isinstance(doc, dict):
        raise LevelError(f"level {name}: definition must be an object")
    unknown = set(doc) - _KEYS
    if unknown:
        raise LevelError(f"level {name}: unknown rule(s) {sorted(k[:32] for k in unknown)}")
    missing = _REQUIRED - set(doc)
    if missing:
        raise LevelError(f"level {name}: missing rule(s) {sorted(missing)}")
    for rule, allowed in (("header", HEADERS), ("uids", UIDS), ("dates", DATES), ("pixels", PIXELS)):
        if doc[rule] not in allowed:
            raise LevelError(f"level {name}: {rule} must be one of {', '.join(allowed)}")
    for rule in ("watermark", "private_mark"):
        if rule in doc and not isinstance(doc[rule], bool):
            raise LevelError(f"level {name}: {rule} must be true or false")
    keep = _keywords(name, "keep", doc.get("keep"))
    empty = _keywords(name, "empty", doc.get("empty", []))
    if doc["header"] == "original":
        if (doc["uids"], doc["dates"], doc["pixels"]) != ("original",) * 3 or keep is not None or empty:
            raise LevelError(f"level {name}: an original header keeps original UIDs, dates and pixels, whole")
    else:
        if "original" in (doc["uids"], doc["dates"], doc["pixels"]):
            raise LevelError(f"level {name}: a de-identified header cannot carry original UIDs, dates or pixels")
        if empty and keep is None:
            raise LevelError(f"level {name}: 'empty' needs a 'keep' list")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise LevelError(f"level {name}: description must be text")
    return Level(name, doc["header"], doc["uids"], doc["dates"], doc["pixels"],
                 doc["watermark"], doc.get("private_mark", False), keep, tuple(empty or ()), description)


def _keywords(name: str, rule: str, value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LevelError(f"level {name}: {rule} must be a list of attribute keywords")
    bad = [v for v in value if tag_for_keyword(v) is None]
    if bad:
        raise LevelError(f"level {name}: {rule} names {len(bad)} unknown keyword(s)")
    return tuple(value)


def parse_levels(doc: object) -> dict[str, Level]:
    if not isinstance(doc, dict) or not isinstance(doc.get("levels"), dict):
        raise LevelError("a levels file is an object with a 'levels' object")
    if set(doc) - {"levels", "_comment"}:
        raise LevelError("a levels file has only 'levels' (and '_comment')")
    return {name: parse_level(name, body) for name, body in doc["levels"].items()}


@lru_cache(maxsize=1)
def builtin_levels() -> dict[str, Level]:
    text = resources.files("safepacs.render").joinpath("data/levels.json").read_text("utf-8")
    levels = parse_levels(json.loads(text))
    assert set(levels) == set(BUILT_IN)
    return levels


def load_levels(site_file: Path | None = None) -> dict[str, Level]:
    """The built-in levels plus the site's (which may not redefine a built-in)."""
    levels = dict(builtin_levels())
    if site_file is None:
        return levels
    try:
        doc = json.loads(Path(site_file).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise LevelError(f"{Path(site_file).name}: cannot read site levels ({exc.__class__.__name__})") from None
    site = parse_levels(doc)
    clash = set(site) & set(levels)
    if clash:
        raise LevelError(f"site levels may not redefine built-in level(s) {sorted(clash)}")
    levels.update(site)
    return levels


def level(name: str, levels: dict[str, Level] | None = None) -> Level:
    """The level called ``name``; unknown names are refused, never mapped to a default."""
    found = (levels or builtin_levels()).get(name)
    if found is None:
        raise LevelError("unknown access level")
    return found
