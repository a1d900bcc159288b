"""Retention policies as data: which studies a policy covers and how long they are kept.

A policy matches on modality, study type (words of the de-identified study description),
patient age at acquisition, and legal basis; it keeps a study ``keep_days`` counted from the
study date or from the last access (``keep_days: null`` keeps forever).  Policies are
tried in order, the first that surely matches wins -- but a policy whose condition cannot
be decided (the age is unknown) still counts: the longest period among those is taken, so
missing facts never shorten retention.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from safepacs.errors import SafepacsError

SITE_FILE = "retention.json"
ANCHORS = ("study_date", "last_access")
_MATCH_KEYS = {"modalities", "study_types", "age_min", "age_max", "legal_basis"}


class PolicyError(SafepacsError):
    """A malformed policy file (the message names the policy, never patient data)."""


@dataclass(frozen=True)
class Policy:
    name: str
    keep_days: int | None  # None: never destroyed
    anchor: str = "study_date"
    modalities: frozenset[str] = frozenset()
    study_types: tuple[str, ...] = ()
    age_min: int | None = None
    age_max: int | None = None
    legal_basis: frozenset[str] = frozenset()
    description: str = ""

    def matches(self, *, modalities: set[str], description: str, age: int | None, legal_basis: str) -> bool | None:
        """True / False, or None when it depends on a fact that is unknown (the age)."""
        if self.modalities and not (self.modalities & modalities):
            return False
        if self.study_types and not any(t in description.upper() for t in self.study_types):
            return False
        if self.legal_basis and legal_basis not in self.legal_basis:
            return False
        if self.age_min is not None or self.age_max is not None:
            if age is None:
                return None
            if self.age_min is not None and age < self.age_min:
                return False
            if self.age_max is not None and age > self.age_max:
                return False
        return True


def parse(doc: object, where: str) -> list[Policy]:
    if not isinstance(doc, dict) or not isinstance(doc.get("policies"), list):
        raise PolicyError(f"{where}: expected an object with a 'policies' list")
    out = []
    for i, p in enumerate(doc["policies"]):
        label = f"{where}: policy {i + 1}"
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"]:
            raise PolicyError(f"{label}: needs a name")
        label = f"{where}: policy {p['name']!r}"
        match = p.get("match", {})
        if not isinstance(match, dict) or set(match) - _MATCH_KEYS:
            raise PolicyError(f"{label}: match keys must be among {sorted(_MATCH_KEYS)}")
        keep = p.get("keep_days")
        if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 0):
            raise PolicyError(f"{label}: keep_days must be a whole number >= 0 or null")
        anchor = p.get("from", "study_date")
        if anchor not in ANCHORS:
            raise PolicyError(f"{label}: 'from' must be one of {ANCHORS}")
        for key in ("age_min", "age_max"):
            if key in match and (not isinstance(match[key], int) or isinstance(match[key], bool)):
                raise PolicyError(f"{label}: {key} must be a whole number of years")
        out.append(Policy(
            name=p["name"], keep_days=keep, anchor=anchor,
            modalities=frozenset(str(m).upper() for m in match.get("modalities", [])),
            study_types=tuple(str(t).upper() for t in match.get("study_types", [])),
            age_min=match.get("age_min"), age_max=match.get("age_max"),
            legal_basis=frozenset(str(b) for b in match.get("legal_basis", [])),
            description=str(p.get("description", "")),
        ))
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise PolicyError(f"{where}: policy names must be unique")
    return out


def defaults() -> list[Policy]:
    text = (resources.files("safepacs.retention") / "data" / "default_policies.json").read_text("utf-8")
    return parse(json.loads(text), "default_policies.json")


def merge(site: list[Policy], default: list[Policy]) -> list[Policy]:
    """Site policies first; a default is replaced by the site policy of its name."""
    names = {p.name for p in site}
    return site + [p for p in default if p.name not in names]


def load(data_dir: Path | None) -> list[Policy]:
    """The policies in force: ``DATA_DIR/retention.json`` (if any) over the defaults."""
    site: list[Policy] = []
    if data_dir is not None and (Path(data_dir) / SITE_FILE).exists():
        path = Path(data_dir) / SITE_FILE
        try:
            doc = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise PolicyError(f"{path}: unreadable ({exc.__class__.__name__})") from None
        site = parse(doc, SITE_FILE)
    return merge(site, defaults())
