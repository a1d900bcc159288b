"""Reviewed site data beside the standard's table: the keep-list and the safe private list.

Both are data files inside the package (``deid/data``) so that a reviewer changes a list,
not code, and every decision is visible in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.tag import BaseTag

from safepacs.dicom.io import read_value


@dataclass(frozen=True)
class SafePrivate:
    """Safe private elements of one private creator: element offset -> allowed VRs."""

    group: int
    elements: dict[int, frozenset[str]]


@dataclass(frozen=True)
class Policy:
    keep_tags: frozenset[int]
    binary_keep_tags: frozenset[int]
    binary_keep_groups: frozenset[int]
    safe_private: dict[str, SafePrivate]  # creator (stripped, upper case) -> entries
    standard_schemes: frozenset[str] = frozenset()
    free_text_tags: frozenset[int] = frozenset()
    #: unlisted text that the IOD requires: replaced by a dummy (Type 1) or emptied (Type 2)
    dummy_tags: frozenset[int] = frozenset()
    empty_tags: frozenset[int] = frozenset()
    #: unlisted labels and descriptions of the content: cleaned under Clean Descriptors
    descriptor_tags: frozenset[int] = frozenset()

    def safe_private_vrs(self, creator: str, group: int, offset: int) -> frozenset[str] | None:
        entry = self.safe_private.get(creator.strip().upper())
        if entry is None or entry.group != group:
            return None
        return entry.elements.get(offset)


def _read(name: str) -> dict:
    text = resources.files("safepacs.deid").joinpath(f"data/{name}").read_text("utf-8")
    return json.loads(text)


def _tags(keywords: list[str], source: str) -> frozenset[int]:
    tags = set()
    for kw in keywords:
        tag = tag_for_keyword(kw)
        if tag is None:
            raise ValueError(f"{source}: unknown keyword {kw!r}")
        tags.add(tag)
    return frozenset(tags)


@lru_cache(maxsize=1)
def load_policy() -> Policy:
    keep = _read("keep_list.json")
    private = _read("safe_private.json")
    safe = {
        creator.strip().upper(): SafePrivate(
            int(spec["group"], 16),
            {int(off, 16): frozenset(e["vr"]) for off, e in spec["elements"].items()},
        )
        for creator, spec in private["creators"].items()
    }
    return Policy(
        keep_tags=_tags(keep["keywords"], "keep_list.json"),
        binary_keep_tags=_tags(keep["binary_keywords"], "keep_list.json"),
        binary_keep_groups=frozenset(int(g, 16) for g in keep["binary_groups"]),
        safe_private=safe,
        standard_schemes=frozenset(s.upper() for s in keep["standard_coding_schemes"]),
        free_text_tags=_tags(keep["free_text_keywords"], "keep_list.json"),
        dummy_tags=_tags(keep["required_dummy_keywords"], "keep_list.json"),
        empty_tags=_tags(keep["required_empty_keywords"], "keep_list.json"),
        descriptor_tags=_tags(keep["descriptor_keywords"], "keep_list.json"),
    )


def safe_private_tags(ds: Dataset, policy: Policy) -> set[int]:
    """Tags of ``ds`` (one level) on the safe private list: the listed elements, by their
    block's creator, group and offset and with an allowed VR (UN: read without VRs), and
    their creators.  What Retain Safe Private keeps, and what verify-deid then expects."""
    keep: set[int] = set()
    creators: dict[tuple[int, int], str] = {}
    for elem in ds.elements():
        tag = BaseTag(elem.tag)
        if tag.group & 1 and 0x10 <= tag.element <= 0xFF:
            value = read_value(ds, tag).value
            if isinstance(value, str):
                creators[(tag.group, tag.element)] = value
    for elem in ds.elements():
        tag = BaseTag(elem.tag)
        if not tag.group & 1 or tag.element < 0x1000:
            continue
        creator = creators.get((tag.group, tag.element >> 8))
        if creator is None:
            continue
        vrs = policy.safe_private_vrs(creator, tag.group, tag.element & 0xFF)
        vr = str(getattr(elem, "VR", None) or "UN")
        if vrs and (vr in vrs or vr == "UN"):
            keep.add(int(tag))
            keep.add((tag.group << 16) | (tag.element >> 8))
    return keep
