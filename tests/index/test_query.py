"""DICOM matching rules as pure functions (SQL behaviour is tested in tests/archive)."""

from __future__ import annotations

import pytest

from safepacs.index import query


def test_wildcards_become_like_patterns_with_sql_metacharacters_escaped():
    assert query.like_pattern("ZH*N?") == "ZH%N_"
    assert query.like_pattern("50%_a\\") == "50\\%\\_a\\\\"


@pytest.mark.parametrize(
    "value, expected",
    [("20240305", ("20240305", "20240305")), ("20240101-20241231", ("20240101", "20241231")),
     ("-20240101", (None, "20240101")), ("20240101-", ("20240101", None))],
)
def test_date_ranges(value, expected):
    assert query.date_range(value, "StudyDate") == expected


@pytest.mark.parametrize("value", ["2024-03-05", "2024030", "20241231-20240101", "-", "abc"])
def test_malformed_dates_raise_value_error_naming_the_attribute(value):
    with pytest.raises(ValueError, match="StudyDate"):
        query.date_range(value, "StudyDate")


@pytest.mark.parametrize("uid", ["../etc", "1.2.*", "", "1." + "2" * 70, "1..2", "a.b"])
def test_malformed_uids_are_refused(uid):
    with pytest.raises(ValueError):
        query.check_uid(uid)


def test_uid_lists():
    assert query.uid_list("1.2.3\\1.2.4", "StudyInstanceUID") == ["1.2.3", "1.2.4"]


def test_unknown_attribute_is_refused_and_tags_are_accepted():
    assert query.attr("00100020").keyword == "PatientID"
    with pytest.raises(ValueError, match="not supported"):
        query.attr("NotAnAttribute")


@pytest.mark.parametrize(
    "q, hit",
    [("ZHANG^WEI", True), ("zhang^wei", True), ("张^伟", True), ("ZHANG^WEI=张^伟", True),
     ("ZH*", True), ("*WEI", True), ("Z?ANG^WEI", True), ("ZHANG", False), ("WANG^WEI", False),
     ("张*", True), ("ZHANG^WEI^^", True)],
)
def test_person_name_matching(q, hit):
    assert query.pn_matches(q, "ZHANG^WEI=张^伟") is hit


def test_fuzzy_person_name_matching_takes_words_in_any_order():
    assert query.pn_matches("wei zhang", "ZHANG^WEI", fuzzy=True)
    assert not query.pn_matches("wei zhang", "ZHANG^WEI")
    assert not query.pn_matches("li", "ZHANG^WEI", fuzzy=True)


def test_limit_and_offset_must_not_be_negative():
    with pytest.raises(ValueError):
        query.build("study", {}, limit=-1)
    with pytest.raises(ValueError):
        query.build("study", {}, offset=-5)


def test_lower_level_attribute_is_refused_at_a_higher_level():
    with pytest.raises(ValueError, match="study level"):
        query.build("study", {"SOPInstanceUID": "1.2.3"})
