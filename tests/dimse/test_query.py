"""C-FIND identifiers to searches, answers with exactly the requested keys; the allow-list."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import Dataset
from pynetdicom.dsutils import decode, encode

from safepacs.dimse import caller_allowed, query


def identifier(level: str, **elements) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in elements.items():
        setattr(ds, k, v)
    return ds


def test_non_empty_elements_match_and_every_element_returns():
    req = query.parse(identifier("STUDY", PatientName="ZHANG^*", StudyDate="20240101-", StudyInstanceUID="",
                                 ModalitiesInStudy=["CT", "MR"]), model="study")
    assert req.level == "study"
    assert req.filters == {"PatientName": "ZHANG^*", "StudyDate": "20240101-", "ModalitiesInStudy": "CT\\MR"}
    assert set(req.return_keys) == {"PatientName", "StudyDate", "StudyInstanceUID", "ModalitiesInStudy"}


@pytest.mark.parametrize("charset", ["GB18030", "UTF-8", "ISO_IR192"])
def test_a_name_queried_in_utf8_under_another_declaration_is_read_as_utf8(charset):
    """As it comes off the wire (implicit VR): the declaration names another set, or the
    right one spelled otherwise; the name's bytes are UTF-8."""
    ds = identifier("STUDY", StudyInstanceUID="")
    ds.SpecificCharacterSet = charset
    ds.add_new(0x00100010, "PN", "张^伟明".encode())
    received = decode(BytesIO(encode(ds, True, True)), True, True)
    assert query.parse(received, model="study").filters["PatientName"] == "张^伟明"


@pytest.mark.parametrize(("level", "model"), [("", "study"), ("FRAME", "study"), ("PATIENT", "study")])
def test_bad_levels_are_refused(level, model):
    with pytest.raises(query.IdentifierError):
        query.parse(identifier(level), model=model)


def test_answer_has_only_the_requested_keys_and_utf8_for_chinese():
    req = query.parse(identifier("IMAGE", PatientName="", SOPInstanceUID=""), model="patient")
    result = Dataset()
    result.PatientName = "Zhang^Wei=张^伟"
    result.SOPInstanceUID = "2.25.9"
    result.PatientBirthDate = "19500101"  # not asked for
    out = query.answer(result, req, ae_title="SAFEPACS")
    assert "PatientBirthDate" not in out
    assert str(out.PatientName) == "Zhang^Wei=张^伟"
    assert out.SpecificCharacterSet == "ISO_IR 192"
    assert out.QueryRetrieveLevel == "IMAGE"


def test_patient_level_reduces_to_one_answer_per_patient():
    rows = []
    for pid in ("A", "B", "A"):
        ds = Dataset()
        ds.PatientID = pid
        rows.append(ds)
    assert [str(d.PatientID) for d in query.patients(rows)] == ["A", "B"]


def test_allow_list():
    assert caller_allowed("ANY", "127.0.0.1", [])
    assert caller_allowed("ANY", "::1", [])
    assert not caller_allowed("ANY", "10.1.2.3", [])
    allowed = [{"ae_title": "CT1", "host": "10.1.2.3"}, {"ae_title": "*", "host": "10.9.9.9"}]
    assert caller_allowed("CT1 ", "10.1.2.3", allowed)
    assert not caller_allowed("CT1", "10.1.2.4", allowed)
    assert not caller_allowed("MR1", "10.1.2.3", allowed)
    assert caller_allowed("MR1", "10.9.9.9", allowed)
    assert not caller_allowed("CT1", "127.0.0.1", allowed)  # a configured list replaces the loopback rule
