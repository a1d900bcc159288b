"""The Annex E table as data: which action applies to which attribute under which options."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from safepacs.deid.options import Options

#: Actions the table uses.  Combined actions are resolved by :func:`resolve_combined`.
ACTIONS = {"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"}


@dataclass(frozen=True)
class Row:
    tag: str  # "00100010", "60XX3000", "50XXXXXX" or "private"
    name: str
    basic: str
    options: dict[str, str]

    def action(self, options: Options) -> str:
        """The action under ``options``: an option's entry replaces the basic profile's.

        Where several enabled options name the attribute, a keep (K) beats a clean (C),
        and both beat the basic action, because each option exists to keep information.
        """
        chosen = self.basic
        for name, act in self.options.items():
            if getattr(options, name):
                if act == "K" or chosen != "K":
                    chosen = act
        return chosen


@dataclass(frozen=True)
class Profile:
    rows: dict[int, Row]  # exact tags
    masked: tuple[tuple[int, int, Row], ...]  # (mask, value, row) for repeating groups
    private: Row
    edition: str
    source: str

    def row_for(self, tag: int) -> Row | None:
        """The table row for a tag, or None when the table does not list it."""
        if (tag >> 16) & 1:  # odd group: private (0001-0007 are illegal, treated alike)
            return self.private
        row = self.rows.get(tag)
        if row is not None:
            return row
        for mask, value, mrow in self.masked:
            if tag & mask == value:
                return mrow
        return None


def _mask(pattern: str) -> tuple[int, int]:
    mask = int("".join("0" if c == "X" else "F" for c in pattern), 16)
    value = int(pattern.replace("X", "0"), 16)
    return mask, value


@lru_cache(maxsize=1)
def load_profile() -> Profile:
    """Load Table E.1-1 shipped in ``safepacs/deid/data/profile_e1_1.json``."""
    raw = json.loads(
        resources.files("safepacs.deid").joinpath("data/profile_e1_1.json").read_text("utf-8")
    )
    exact: dict[int, Row] = {}
    masked: list[tuple[int, int, Row]] = []
    private: Row | None = None
    for item in raw["rows"]:
        row = Row(item["tag"], item["name"], item["basic"], dict(item["options"]))
        if row.basic not in ACTIONS:
            raise ValueError(f"profile row {row.tag}: unknown action {row.basic!r}")
        if row.tag == "private":
            private = row
        elif "X" in row.tag:
            mask, value = _mask(row.tag)
            masked.append((mask, value, row))
        else:
            exact[int(row.tag, 16)] = row
    if private is None:
        raise ValueError("profile has no private-attributes row")
    return Profile(exact, tuple(masked), private, raw["edition"], raw["source"])
