"""Levels are data, validated on load: anything unknown or inconsistent is refused."""

from __future__ import annotations

import json

import pytest

from safepacs.render.levels import (
    BUILT_IN,
    LevelError,
    builtin_levels,
    level,
    load_levels,
    parse_level,
)

GOOD = {"header": "deidentified", "uids": "project", "dates": "remove", "pixels": "cleaned",
        "watermark": True, "keep": ["Modality", "PixelData"], "empty": ["PatientID"]}


def test_built_in_levels_load_and_differ_as_the_issue_says():
    levels = builtin_levels()
    assert set(levels) == set(BUILT_IN)
    assert levels["identified"].header == "original" and levels["identified"].needs_delta
    assert levels["pseudonymised"].needs_project and levels["pseudonymised"].watermark
    anon = levels["anonymised"]
    assert anon.keep is not None and "PatientName" not in anon.keep and anon.uids == "fresh"
    assert not levels["deidentified"].needs_delta and not levels["deidentified"].watermark


def test_site_level_loads_beside_the_built_ins(tmp_path):
    path = tmp_path / "levels.json"
    path.write_text(json.dumps({"levels": {"teaching-min": GOOD}}))
    levels = load_levels(path)
    assert levels["teaching-min"].keep == ("Modality", "PixelData")
    assert set(BUILT_IN) < set(levels)


@pytest.mark.parametrize("change, message", [
    ({"colour": "blue"}, "unknown rule"),
    ({"uids": "whatever"}, "uids must be"),
    ({"dates": "original"}, "de-identified header cannot"),
    ({"pixels": "original"}, "de-identified header cannot"),
    ({"watermark": "yes"}, "true or false"),
    ({"keep": ["NotAKeyword"]}, "unknown keyword"),
    ({"keep": None, "empty": ["PatientID"]}, "needs a 'keep'"),
    ({"header": "original"}, "original header keeps"),
])
def test_bad_definitions_are_refused(change, message):
    doc = {**GOOD, **change}
    doc = {k: v for k, v in doc.items() if v is not None or k != "keep"}
    with pytest.raises(LevelError, match=message):
        parse_level("site", doc)


def test_missing_rule_and_bad_names_are_refused():
    doc = dict(GOOD)
    del doc["watermark"]
    with pytest.raises(LevelError, match="missing"):
        parse_level("site", doc)
    with pytest.raises(LevelError, match="name"):
        parse_level("Bad Name", GOOD)


def test_site_cannot_redefine_a_built_in_or_break_the_file(tmp_path):
    path = tmp_path / "levels.json"
    path.write_text(json.dumps({"levels": {"anonymised": GOOD}}))
    with pytest.raises(LevelError, match="redefine"):
        load_levels(path)
    path.write_text("{not json")
    with pytest.raises(LevelError, match="cannot read"):
        load_levels(path)
    path.write_text(json.dumps({"levels": {}, "extra": 1}))
    with pytest.raises(LevelError):
        load_levels(path)


def test_unknown_level_name_is_refused_not_defaulted():
    with pytest.raises(LevelError):
        level("superuser")
    assert level("anonymised").name == "anonymised"
