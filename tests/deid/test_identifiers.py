"""Gathering a file's identifying values, at every depth, by the roles of Annex E."""

from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from safepacs.deid.identifiers import (
    FREE_TEXT,
    NON_IDENTIFYING,
    PRIVATE,
    Identifiers,
    collect_identifiers,
    date_variants,
    iter_values,
    normalize,
)
from tests.conftest import with_damaged_vr


def sample() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "ZHANG^WEI=张^伟"
    ds.PatientID = "PID20240001"
    ds.OtherPatientIDs = ["OLD123456", "12"]
    ds.PatientBirthDate = "19800507"
    ds.PatientAddress = "12 Chaoyang Road, Beijing"
    ds.PatientTelephoneNumbers = "+86 13812345678"
    ds.PatientTelecomInformation = "zhang.wei@example.com"
    ds.PatientSex = "M"
    ds.PatientAge = "043Y"
    ds.AccessionNumber = "ACC778899"
    ds.StudyID = "7"
    ds.StudyDate = "20240315"
    ds.AcquisitionDateTime = "20240315101500"
    ds.StudyTime = "101500"
    ds.InstitutionName = "Beijing Union Hospital"
    ds.StationName = "CT01"
    ds.Manufacturer = "ACME Medical"
    ds.Modality = "CT"
    ds.StudyDescription = "CT CHEST"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    other = Dataset()
    other.PatientID = "MRN-555-777"
    other.IssuerOfPatientID = "HOSPITAL-B"
    ds.OtherPatientIDsSequence = [other]
    physician = Dataset()
    code = Dataset()
    code.CodeValue = "DOC4711"
    code.CodingSchemeDesignator = "L"
    code.CodeMeaning = "Dr Wang"
    physician.PersonIdentificationCodeSequence = [code]
    ds.ReferringPhysicianIdentificationSequence = [physician]
    request = Dataset()
    request.RequestedProcedureID = "RP-2024-99"
    reason = Dataset()
    reason.CodeValue = "R05"
    reason.CodingSchemeDesignator = "I10"
    reason.CodeMeaning = "Cough"
    request.ReasonForRequestedProcedureCodeSequence = [reason]
    inner = Dataset()
    inner.PersonName = "WANG^FANG"
    request.ContentSequence = [inner]
    ds.RequestAttributesSequence = [request]
    ds.add_new(0x00090010, "LO", "ACME PRIVATE")
    ds.add_new(0x00091001, "LO", "secret private note")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def test_names_keep_full_value_groups_and_components() -> None:
    ids = collect_identifiers(sample())
    assert {"ZHANG^WEI=张^伟", "ZHANG^WEI", "张^伟", "ZHANG", "WEI"} <= ids.name


def test_single_cjk_character_is_not_a_name_but_two_are() -> None:
    ids = collect_identifiers(sample())
    assert "张" not in ids.name and "伟" not in ids.name
    assert any(n.text == "张 伟" for n in ids.needles(["name"]))


def test_person_name_in_nested_sequence_is_collected() -> None:
    assert "WANG^FANG" in collect_identifiers(sample()).name


def test_ids_come_from_every_depth() -> None:
    ids = collect_identifiers(sample()).id
    assert {"PID20240001", "OLD123456", "ACC778899", "MRN-555-777", "RP-2024-99",
            "DOC4711"} <= ids


def test_short_values_identify_nobody() -> None:
    ids = collect_identifiers(sample())
    assert "12" not in ids.id and "7" not in ids.id and "M" not in ids.patient_characteristic


def test_dates_and_birth_dates_are_separate_and_canonical() -> None:
    ids = collect_identifiers(sample())
    assert ids.date == frozenset({"20240315"})
    assert ids.birth_date == frozenset({"19800507"})


def test_times_are_not_identifiers() -> None:
    assert all("101500" != v for _, v in collect_identifiers(sample()).items())


def test_contact_details_are_split_by_kind() -> None:
    ids = collect_identifiers(sample())
    assert ids.address == frozenset({"12 Chaoyang Road, Beijing"})
    assert ids.phone == frozenset({"+86 13812345678"})
    assert ids.email == frozenset({"zhang.wei@example.com"})


def test_institution_device_uid_and_characteristics_follow_the_options_columns() -> None:
    ids = collect_identifiers(sample())
    assert ids.institution == frozenset({"Beijing Union Hospital", "HOSPITAL-B"})
    assert ids.device == frozenset({"CT01"})
    assert ids.patient_characteristic == frozenset({"043Y"})
    assert ids.uid == frozenset({"1.2.826.0.1.3680043.8.498.1"})


def test_issuers_are_institution_values_at_every_depth() -> None:
    """An issuer names the assigning authority (a hospital, its RIS), not a person: it may
    remain where the institution's identity does, listed by Annex E or not."""
    ds = sample()
    ds.IssuerOfPatientID = "CCHS"
    ds.IssuerOfClinicalTrialSubjectID = "SPONSOR-7"
    accession = Dataset()
    accession.LocalNamespaceEntityID = "CCHS-RIS"
    accession.UniversalEntityID = "2.16.124.113635.1"
    accession.UniversalEntityIDType = "ISO"
    ds.IssuerOfAccessionNumberSequence = [accession]  # not in Table E.1-1
    admission = Dataset()
    admission.LocalNamespaceEntityID = "CCHS-ADT"
    ds.IssuerOfAdmissionIDSequence = [admission]
    facility = Dataset()
    facility.LocalNamespaceEntityID = "CCHS-EAST"
    qualifiers = Dataset()
    qualifiers.AssigningFacilitySequence = [facility]
    ds.OtherPatientIDsSequence[0].IssuerOfPatientIDQualifiersSequence = [qualifiers]
    values = {v.text: v for v in iter_values(ds)}
    for issuer in ("CCHS", "SPONSOR-7", "CCHS-RIS", "2.16.124.113635.1", "CCHS-ADT",
                   "CCHS-EAST", "HOSPITAL-B"):
        assert (values[issuer].kind, values[issuer].waivers) == (
            "institution", {"retain_institution_identity"}), issuer
    assert values["MRN-555-777"].kind == "id"  # the ID an issuer gave identifies the patient
    assert values["ISO"].kind == NON_IDENTIFYING
    ids = collect_identifiers(ds)
    assert {"CCHS", "CCHS-RIS", "CCHS-EAST"} <= ids.institution
    assert not {"CCHS", "CCHS-RIS", "CCHS-EAST"} & ids.id


def test_non_identifying_attributes_and_concept_codes_are_not_identifiers() -> None:
    everything = {v for _, v in collect_identifiers(sample()).items()}
    assert not {"ACME Medical", "CT", "Cough", "CT CHEST", "1.2.840.10008.5.1.4.1.1.2"} & everything


def test_iter_values_labels_free_text_private_and_non_identifying() -> None:
    labelled = {(v.kind, v.text) for v in iter_values(sample())}
    assert (FREE_TEXT, "CT CHEST") in labelled
    assert (PRIVATE, "secret private note") in labelled
    assert (NON_IDENTIFYING, "ACME Medical") in labelled
    assert (NON_IDENTIFYING, "ACME PRIVATE") in labelled  # private creator
    assert (NON_IDENTIFYING, "Cough") in labelled


def test_waivers_name_the_options_that_keep_a_value() -> None:
    waivers = {v.text: v.waivers for v in iter_values(sample())}
    assert waivers["CT01"] == {"retain_device_identity"}
    assert "retain_long_full_dates" in waivers["20240315"]
    assert waivers["19800507"] == frozenset()
    assert "clean_descriptors" in waivers["CT CHEST"]


def test_date_variants_cover_written_forms_with_and_without_padding() -> None:
    forms = set(date_variants("20240305"))
    assert {"20240305", "2024-03-05", "2024/03/05", "2024.03.05", "05.03.2024", "03.05.2024",
            "05/03/2024", "03/05/2024", "2024年3月5日", "2024年03月05日", "5/3/2024"} <= forms


def test_needles_are_longest_first_and_names_come_in_both_orders() -> None:
    needles = collect_identifiers(sample()).needles()
    keys = [n.key for n in needles]
    assert keys == sorted(keys, key=len, reverse=True)
    texts = {n.text for n in needles if n.kind == "name"}
    assert {"ZHANG WEI", "WEI ZHANG"} <= texts


def test_identifiers_union_and_without() -> None:
    a = Identifiers(name=frozenset({"ZHANG"}), date=frozenset({"20240315"}))
    b = Identifiers(name=frozenset({"WANG"}))
    both = a.union(b)
    assert both.name == {"ZHANG", "WANG"}
    assert not both.without("date").date
    assert not Identifiers()


def test_normalize_ignores_case_and_separators() -> None:
    assert normalize("Zhang, Wei") == normalize("ZHANG^WEI") == normalize("zhang wei")


def test_file_meta_is_walked() -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    assert collect_identifiers(ds).uid == {"1.2.826.0.1.3680043.8.498.2"}


def test_a_utc_offset_identifies_nobody() -> None:
    """TimezoneOffsetFromUTC ("+0200") is shared by a whole region and is also the suffix of
    every DT value: taken for identifying text, verify-deid reported each date-time kept
    under Retain Longitudinal Modified Dates as a leak, and cleaning scrubbed the offset."""
    ds = sample()
    ds.TimezoneOffsetFromUTC = "+0200"
    ids = collect_identifiers(ds)
    assert not any("0200" in v for kind in ("other_text", "id", "date") for v in getattr(ids, kind))


def test_each_value_carries_the_path_of_tags_it_was_held_at() -> None:
    """verify-deid excuses a non-identifying value only in the attribute that held it:
    top level, inside sequences (items not counted) and in private blocks alike."""
    ds = Dataset()
    ds.Manufacturer = "ACME Medical"
    code = Dataset()
    code.CodeMeaning = "Chest CT"
    ds.ProcedureCodeSequence = [Dataset(), code]
    block = ds.private_block(0x0009, "ACME NOTES", create=True)
    note = Dataset()
    note.add_new(0x00111001, "LO", "ROOM-7731-B")
    block.add_new(0x01, "SQ", [note])
    paths = {v.text: v.path for v in iter_values(ds)}
    assert paths["ACME Medical"] == (0x00080070,)
    assert paths["Chest CT"] == (0x00081032, 0x00080104)
    assert paths["ACME NOTES"] == (0x00090010,)
    assert paths["ROOM-7731-B"] == (0x00091001, 0x00111001)


def _damaged(ds: Dataset, keyword_value: bytes, vr: bytes) -> Dataset:
    """``ds`` written as explicit VR little endian and read back with the VR of the element
    holding ``keyword_value`` overwritten by ``vr``: a value pydicom cannot decode."""
    from io import BytesIO

    from pydicom import dcmread

    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = with_damaged_vr(buf.getvalue(), keyword_value, vr)
    return dcmread(BytesIO(data), stop_before_pixels=True)


def test_a_value_with_a_damaged_vr_is_still_collected_from_its_bytes() -> None:
    """A PatientID whose VR a damaged file spells "Lg": pydicom cannot decode it, yet its
    bytes are the ID, and verify-deid must still look for it (fail closed)."""
    ds = sample()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    damaged = _damaged(ds, b"PID20240001", b"Lg")
    with pytest.raises(NotImplementedError):  # the damage is one pydicom refuses
        _ = damaged.PatientID
    assert "PID20240001" in collect_identifiers(damaged).id
    assert {v.keyword for v in iter_values(damaged) if v.text == "PID20240001"} == {"PatientID"}


def test_control_characters_part_a_value_like_a_separator() -> None:
    """A UID damaged by control bytes yields its digits, not a needle holding the bytes
    (which matched unrelated header bytes in verify-deid's raw search), and a name with
    NUL between its parts is the name."""
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.826.0\x07\x00\x00\x00680043.2.1143"
    ds.PatientName = "ZHANG\x00\x00WEI"
    ids = collect_identifiers(ds)
    assert all(v.isprintable() for kind in ("uid", "name") for v in getattr(ids, kind))
    assert any("680043" in v for v in ids.uid)
    assert normalize(next(v.text for v in iter_values(ds) if v.keyword == "PatientName")) == "zhangwei"
