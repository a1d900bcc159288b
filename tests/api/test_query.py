"""QIDO-RS query strings to archive search arguments."""

from __future__ import annotations

import pytest

from safepacs.api.query import parse


def test_keywords_tags_and_controls():
    q = parse([
        ("PatientName", "ZHANG^WEI"), ("00100020", "PID*"), ("StudyDate", "20240101-20241231"),
        ("limit", "10"), ("offset", "5"), ("includefield", "StudyDescription,00081030"),
        ("includefield", "PatientBirthDate"), ("fuzzymatching", "true"),
    ])
    assert q.filters == {"PatientName": "ZHANG^WEI", "PatientID": "PID*", "StudyDate": "20240101-20241231"}
    assert (q.limit, q.offset, q.fuzzy) == (10, 5, True)
    assert q.include == ("StudyDescription", "PatientBirthDate")
    assert not q.include_all


def test_includefield_all():
    assert parse([("includefield", "all")]).include_all


def test_uid_lists_become_backslash_lists_and_repeats_of_other_keys_stay_a_list():
    q = parse([("StudyInstanceUID", "1.2.3,1.2.4"), ("StudyInstanceUID", "1.2.5"),
               ("ModalitiesInStudy", "CT"), ("ModalitiesInStudy", "MR")])
    assert q.filters["StudyInstanceUID"] == "1.2.3\\1.2.4\\1.2.5"
    assert q.filters["ModalitiesInStudy"] == ["CT", "MR"]


@pytest.mark.parametrize(
    "pairs",
    [
        [("limit", "-1")], [("limit", "ten")], [("offset", "1e3")], [("limit", "99999999")],
        [("fuzzymatching", "maybe")], [("NotAKeyword", "x")], [("FFFF0000", "x")],
        [("includefield", "Bogus")], [("ReferencedSeriesSequence.SeriesInstanceUID", "1")],
        [("PatientID", "SECRET\x00b")], [("access_token", "SECRET")], [("PatientName", "SECRET" * 300)],
    ],
)
def test_malformed_parameters_raise_value_error_without_echoing_the_value(pairs):
    with pytest.raises(ValueError) as e:
        parse(pairs)
    assert "SECRET" not in str(e.value)


def test_logged_paths_carry_no_uid():
    """A STOW-RS URL names the sender's original StudyInstanceUID: logs show ``{uid}``."""
    from safepacs.api.app import loggable_path

    path = "/dicomweb/studies/1.2.840.113619.2.55.3.604688119/series/2.25.1234/instances"
    assert loggable_path(path) == "/dicomweb/studies/{uid}/series/{uid}/instances"
    assert loggable_path("/dicomweb/studies") == "/dicomweb/studies"
