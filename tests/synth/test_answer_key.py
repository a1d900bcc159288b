"""retained_by follows Table E.1-1; the key survives a JSON round trip; make_dataset works."""

from __future__ import annotations

import io
import json
import random

import pydicom
import pytest
from pydicom.datadict import tag_for_keyword

from safepacs.deid.options import Options
from safepacs.synth import CHARSETS, AnswerKey, make_dataset
from safepacs.synth.answer_key import retained_by
from safepacs.synth.lookup import holds, locate


def _chain(*keywords: str) -> tuple[int, ...]:
    return tuple(tag_for_keyword(k) for k in keywords)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("PatientName",), ()),
        (("PatientBirthDate",), ()),  # Z whatever the date options say
        (("StudyDate",), ("retain_long_full_dates",)),
        (("AcquisitionDateTime",), ("retain_long_full_dates",)),
        (("SOPInstanceUID",), ("retain_uids",)),
        (("FrameOfReferenceUID",), ("retain_uids",)),
        (("InstitutionName",), ("retain_institution_identity",)),
        (("StationName",), ("retain_device_identity",)),
        (("PatientWeight",), ("retain_patient_characteristics",)),
        (("StudyDescription",), ()),  # Clean Descriptors cleans, never keeps
        (("ReferencedImageSequence", "ReferencedSOPInstanceUID"), ("retain_uids",)),
        (("RequestAttributesSequence", "AccessionNumber"), ()),
        (("RequestAttributesSequence", "ReferencedStudySequence", "ReferencedSOPInstanceUID"), ()),
        (("ProcedureCodeSequence", "CodeMeaning"), ()),  # not in the table: nobody promises
    ],
)
def test_retained_by_follows_the_profile(path: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert retained_by(_chain(*path)) == expected
    assert set(expected) <= set(Options.field_names())


def test_private_elements_never_survive() -> None:
    assert retained_by((0x00111012,)) == ()


def test_key_fields_and_round_trip(corpus, tmp_path) -> None:
    doc = json.loads((corpus.root / "answer_key.json").read_text("utf-8"))
    assert {"seed", "count", "small", "files", "planted"} <= set(doc)
    first = doc["planted"][0]
    assert set(first) == {"file", "location", "tag", "kind", "value", "retained_by", "exact"}
    assert AnswerKey.load(corpus.root / "answer_key.json") == corpus.key
    corpus.key.save(tmp_path / "k.json")
    assert (tmp_path / "k.json").read_bytes() == (corpus.root / "answer_key.json").read_bytes()


def test_every_planted_option_name_is_an_options_field(corpus) -> None:
    fields = set(Options.field_names())
    assert all(set(p.retained_by) <= fields for p in corpus.key.planted)


@pytest.mark.parametrize("kind", ["CR", "DX", "CT", "MR", "US", "US_MF", "XA"])
@pytest.mark.parametrize("charset", list(CHARSETS))
def test_make_dataset_writes_a_readable_object_with_its_plants(kind: str, charset: str) -> None:
    ds, planted = make_dataset(random.Random(f"{kind}{charset}"), kind, charset)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    back = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert any(p.location == "PatientName" for p in planted)
    for p in planted:
        elem = locate(back, p.location)
        assert elem is not None and holds(elem, CHARSETS[charset], p.value, p.exact), p


def test_make_dataset_is_deterministic() -> None:
    a, pa = make_dataset(random.Random(4), "MR", "ISO 2022 IR 87")
    b, pb = make_dataset(random.Random(4), "MR", "ISO 2022 IR 87")
    ba, bb = io.BytesIO(), io.BytesIO()
    a.save_as(ba, enforce_file_format=True)
    b.save_as(bb, enforce_file_format=True)
    assert ba.getvalue() == bb.getvalue() and pa == pb


def test_make_dataset_rejects_unknown_kind_or_charset() -> None:
    with pytest.raises(ValueError, match="kind"):
        make_dataset(random.Random(1), "PET")
    with pytest.raises(ValueError, match="charset"):
        make_dataset(random.Random(1), "CT", "KOI8-R")
