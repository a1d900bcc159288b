"""verify-deid: every identifying value of the originals, searched in every output file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from rich.console import Console

from safepacs.deid.engine import deidentify
from safepacs.deid.freetext import resident_id_check_digit
from safepacs.deid.keys import Keys
from safepacs.deid.options import Options
from safepacs.deid.verify import Leak, mask, run_verify, verify_paths
from tests.conftest import with_damaged_vr

ORIGINAL_VALUES = (
    "ZHANG", "张伟", "PID20240001", "ACC778899", "19800507", "20240315", "RP-2024-99",
    "Beijing Union Hospital", "secret private note",
)


def ct_original(charset: str = "ISO_IR 192") -> Dataset:
    """A fake CT header with identifiers at several depths and a private element."""
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "ZHANG^WEI=张^伟"
    ds.PatientID = "PID20240001"
    ds.PatientBirthDate = "19800507"
    ds.PatientSex = "M"
    ds.AccessionNumber = "ACC778899"
    ds.StudyDate = "20240315"
    ds.StudyTime = "101500"
    ds.Modality = "CT"
    ds.Manufacturer = "ACME Medical"
    ds.InstitutionName = "Beijing Union Hospital"
    ds.StationName = "CTSCANNER01"
    ds.StudyDescription = "CT CHEST"
    request = Dataset()
    request.RequestedProcedureID = "RP-2024-99"
    ds.RequestAttributesSequence = [request]
    ds.add_new(0x00090010, "LO", "ACME PRIVATE")
    ds.add_new(0x00091001, "LO", "secret private note")
    return ds


def deidentified(original: Dataset, *codes: str) -> Dataset:
    """A hand-made clean copy: what a correct de-identifier would write."""
    ds = Dataset()
    ds.SpecificCharacterSet = original.SpecificCharacterSet
    ds.SOPClassUID = original.SOPClassUID
    ds.SOPInstanceUID = "2.25." + str(abs(hash(original.SOPInstanceUID)) + 10**20)
    ds.StudyInstanceUID = "2.25.1" + "7" * 20
    ds.SeriesInstanceUID = "2.25.2" + "7" * 20
    ds.PatientName = "SPQ4RT7ZK2"
    ds.PatientID = "SPQ4RT7ZK2"
    ds.Modality = "CT"
    ds.Manufacturer = "ACME Medical"
    ds.StudyDate = "20180101"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethodCodeSequence = [_code(c) for c in ("113100", *codes)]
    return ds


def _code(value: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = "De-identification option"
    return item


def save(ds: Dataset, path: Path, *, implicit: bool = False) -> Path:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def original(tmp_path: Path) -> Dataset:
    ds = ct_original()
    save(ds, tmp_path / "orig" / "ZHANG_WEI" / "1.dcm")
    return ds


def run(tmp_path: Path, **kwargs) -> tuple[int, str]:
    console = Console(record=True, width=200)
    code = run_verify(tmp_path / "orig", tmp_path / "deid", console=console, **kwargs)
    return code, console.export_text()


def leaks(tmp_path: Path) -> list[Leak]:
    return verify_paths(tmp_path / "orig", tmp_path / "deid").leaks


# ----------------------------------------------------------------------- clean output
def test_clean_copy_has_no_leaks_and_exits_zero(tmp_path: Path, original: Dataset) -> None:
    save(deidentified(original), tmp_path / "deid" / "a" / "IM0001.dcm")
    code, out = run(tmp_path)
    assert code == 0
    assert "0 leaks in 1 file" in out


def test_kept_non_identifying_values_are_not_reported(tmp_path: Path, original: Dataset) -> None:
    clean = deidentified(original)
    clean.ImageComments = "ACME Medical CT"
    clean.BodyPartExamined = "CHEST"
    save(clean, tmp_path / "deid" / "x.dcm")
    assert leaks(tmp_path) == []


def test_an_institution_named_like_the_kept_vendor_is_not_reported_in_the_vendor_name(
    tmp_path: Path,
) -> None:
    """pydicom's MR_small_bigendian.dcm: InstitutionName "TOSHIBA", Manufacturer
    "TOSHIBA_MEC".  The kept vendor name is no leak of the institution; the institution's
    name anywhere else still is."""
    ds = ct_original()
    ds.Manufacturer, ds.InstitutionName = "TOSHIBA_MEC", "TOSHIBA"
    save(ds, tmp_path / "orig" / "1.dcm")
    clean = deidentified(ds)
    clean.Manufacturer = "TOSHIBA_MEC"
    save(clean, tmp_path / "deid" / "a.dcm")
    assert leaks(tmp_path) == []
    clean.ImageComments = "scanned at TOSHIBA"
    save(clean, tmp_path / "deid" / "a.dcm")
    assert [(leak.location, leak.kind) for leak in leaks(tmp_path)] == [("ImageComments", "institution")]


# ----------------------------------------------------------------------- issuers
def _issued_by_the_hospital(*, accession: bool = False) -> Dataset:
    """The hospital issued the patient ID (and the accession number): its issuer code is
    the first word of its name, as in pydicom's deid-data ("CCHS", "CCHS CLEVELAND CLINIC
    CANADA")."""
    ds = ct_original()
    ds.IssuerOfPatientID = "CCHS"
    ds.InstitutionName = "CCHS GENERAL HOSPITAL"
    if accession:
        ds.IssuerOfAccessionNumberSequence = [_issuer_item("CCHS")]
    return ds


def _issuer_item(namespace: str) -> Dataset:
    item = Dataset()
    item.LocalNamespaceEntityID = namespace
    return item


def test_the_issuer_inside_an_institution_name_kept_by_113112_is_no_leak(
    tmp_path: Path, keys: Keys
) -> None:
    """An issuer names an institution, not a person: where the file declares Retain
    Institution Identity, the institution's own issuer code in its kept name is neither a
    leak nor a finding.  The patient's ID next to it still is a leak."""
    original = _issued_by_the_hospital()
    save(original, tmp_path / "orig" / "1.dcm")
    out, _ = deidentify(original, Options(retain_institution_identity=True), keys)
    assert out.InstitutionName == "CCHS GENERAL HOSPITAL"
    save(out, tmp_path / "deid" / "1.dcm")
    result = verify_paths(tmp_path / "orig", tmp_path / "deid")
    assert result.leaks == [] and result.kept == []

    out.ImageComments = "CCHS PID20240001"
    save(out, tmp_path / "deid" / "1.dcm")
    assert [(f.location, f.kind) for f in leaks(tmp_path)] == [("ImageComments", "id")]


@pytest.mark.parametrize("accession", [False, True])
def test_a_surviving_issuer_is_an_institution_leak_without_113112(
    tmp_path: Path, accession: bool
) -> None:
    """Fail closed: without the option the issuer is searched for and reported, in the
    issuer attributes and inside the institution name alike; the same code as the
    accession number's issuer (a sequence Annex E does not list) does not hide it."""
    original = _issued_by_the_hospital(accession=accession)
    save(original, tmp_path / "orig" / "1.dcm")
    leaky = deidentified(original, "113109")  # another option keeps no institution
    leaky.IssuerOfPatientID = "CCHS"
    leaky.InstitutionName = "CCHS GENERAL HOSPITAL"
    leaky.IssuerOfAccessionNumberSequence = [_issuer_item("CCHS")]
    save(leaky, tmp_path / "deid" / "1.dcm")
    assert sorted((f.location, f.kind) for f in leaks(tmp_path)) == [
        ("InstitutionName", "institution"),
        ("IssuerOfAccessionNumberSequence[0].LocalNamespaceEntityID", "institution"),
        ("IssuerOfPatientID", "institution"),
    ]


# ----------------------------------------------------------------------- leaks found
def test_value_planted_in_a_nested_sequence_is_found(tmp_path: Path, original: Dataset) -> None:
    leaky = deidentified(original)
    inner = Dataset()
    inner.PatientID = "PID20240001"
    item = Dataset()
    item.OtherPatientIDsSequence = [inner]
    leaky.RequestAttributesSequence = [item]
    save(leaky, tmp_path / "deid" / "renamed.dcm")
    found = leaks(tmp_path)
    assert [(f.location, f.kind) for f in found] == [
        ("RequestAttributesSequence[0].OtherPatientIDsSequence[0].PatientID", "id")
    ]
    assert found[0].deid_file == "renamed.dcm"


def test_private_value_in_a_sequence_is_found(tmp_path: Path, original: Dataset) -> None:
    leaky = deidentified(original)
    item = Dataset()
    item.add_new(0x00090010, "LO", "ACME PRIVATE")
    item.add_new(0x00091001, "LO", "secret private note")
    leaky.RequestAttributesSequence = [item]
    save(leaky, tmp_path / "deid" / "x.dcm")
    assert [(f.location, f.kind) for f in leaks(tmp_path)] == [
        ("RequestAttributesSequence[0].(0009,1001)", "private")
    ]


def test_name_in_other_order_inside_free_text_is_found(tmp_path: Path, original: Dataset) -> None:
    leaky = deidentified(original)
    leaky.ImageComments = "Follow-up for wei zhang"
    save(leaky, tmp_path / "deid" / "x.dcm")
    assert [(f.location, f.kind, f.masked) for f in leaks(tmp_path)] == [
        ("ImageComments", "name", "w***g")
    ]


def test_gb18030_file_leak_is_found_decoded_and_reported_once(tmp_path: Path) -> None:
    save(ct_original("GB18030"), tmp_path / "orig" / "1.dcm")
    leaky = deidentified(ct_original("GB18030"))
    leaky.ImageComments = "患者张伟复查"
    path = save(leaky, tmp_path / "deid" / "x.dcm")
    assert "张伟".encode("gb18030") in path.read_bytes()
    assert [(f.location, f.kind) for f in leaks(tmp_path)] == [("ImageComments", "name")]


def test_gb18030_bytes_in_a_binary_private_blob_are_found(tmp_path: Path) -> None:
    save(ct_original("GB18030"), tmp_path / "orig" / "1.dcm")
    leaky = deidentified(ct_original("GB18030"))
    leaky.SpecificCharacterSet = "ISO_IR 100"
    leaky.add_new(0x00290010, "LO", "VENDOR BLOB")
    leaky.add_new(0x00291010, "OB", b"\x00\x01\x02" + "张伟".encode("gb18030") + b"\x00\x07")
    save(leaky, tmp_path / "deid" / "x.dcm")
    found = leaks(tmp_path)
    assert len(found) == 1
    assert found[0].kind == "name"
    assert found[0].location.startswith("(0029,1010) (raw bytes @")


def test_unreadable_deid_file_is_searched_as_raw_bytes(tmp_path: Path, original: Dataset) -> None:
    blob = tmp_path / "deid" / "notes.bin"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"\x89junk\x00" + "张伟".encode("gb18030") + b"\x00 more PID20240001\x00")
    result = verify_paths(tmp_path / "orig", tmp_path / "deid")
    assert result.unparsed_files == 1
    assert sorted(f.kind for f in result.leaks) == ["id", "name"]
    assert all(f.location.startswith("raw bytes @") for f in result.leaks)


def test_iso_2022_japanese_bytes_are_found(tmp_path: Path) -> None:
    orig = ct_original("ISO_IR 192")
    orig.PatientName = "YAMADA^TARO=山田^太郎"
    save(orig, tmp_path / "orig" / "1.dcm")
    leaky = deidentified(orig)
    leaky.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    leaky.add_new(0x00290010, "LO", "VENDOR BLOB")
    leaky.add_new(0x00291010, "OB", b"\x01\x02" + "山田".encode("iso2022_jp") + b"\x00\x03")
    save(leaky, tmp_path / "deid" / "x.dcm")
    assert [f.kind for f in leaks(tmp_path)] == ["name"]


def test_implicit_vr_private_text_is_found(tmp_path: Path, original: Dataset) -> None:
    leaky = deidentified(original)
    leaky.add_new(0x00090010, "LO", "ACME PRIVATE")
    leaky.add_new(0x00091001, "LO", "secret private note")
    save(leaky, tmp_path / "deid" / "x.dcm", implicit=True)
    assert [(f.location, f.kind) for f in leaks(tmp_path)] == [("(0009,1001)", "private")]


def test_resident_id_and_phone_patterns_are_leaks_even_if_not_in_originals(
    tmp_path: Path, original: Dataset
) -> None:
    first17 = "11010519800507123"
    leaky = deidentified(original)
    leaky.ImageComments = f"id {first17}{resident_id_check_digit(first17)} tel 13812345678"
    save(leaky, tmp_path / "deid" / "x.dcm")
    assert sorted(f.kind for f in leaks(tmp_path)) == ["phone", "resident_id"]


def test_identifying_file_name_is_a_leak_and_is_masked(tmp_path: Path, original: Dataset) -> None:
    save(deidentified(original), tmp_path / "deid" / "ZHANG_WEI" / "1.dcm")
    found = leaks(tmp_path)
    assert [f.location for f in found] == ["file path"]
    assert "ZHANG" not in found[0].deid_file


# ----------------------------------------------------------------------- options
def test_full_dates_are_allowed_under_113106(tmp_path: Path, original: Dataset) -> None:
    kept = deidentified(original, "113106")
    kept.StudyDate = "20240315"
    kept.ImageComments = "scanned 2024-03-15"
    save(kept, tmp_path / "deid" / "x.dcm")
    assert leaks(tmp_path) == []


def test_full_dates_are_leaks_without_113106(tmp_path: Path, original: Dataset) -> None:
    kept = deidentified(original, "113107")
    kept.StudyDate = "20240315"
    save(kept, tmp_path / "deid" / "x.dcm")
    assert [(f.location, f.kind) for f in leaks(tmp_path)] == [("StudyDate", "date")]


def test_birth_date_is_a_leak_even_under_113106(tmp_path: Path, original: Dataset) -> None:
    kept = deidentified(original, "113106")
    kept.ImageComments = "DOB 07.05.1980"
    save(kept, tmp_path / "deid" / "x.dcm")
    assert [f.kind for f in leaks(tmp_path)] == ["birth_date"]


def test_device_institution_and_uids_follow_their_options(
    tmp_path: Path, original: Dataset
) -> None:
    kept = deidentified(original)
    kept.StationName = "CTSCANNER01"
    kept.InstitutionName = "Beijing Union Hospital"
    kept.StudyInstanceUID = original.StudyInstanceUID
    save(kept, tmp_path / "deid" / "a.dcm")
    assert sorted(f.kind for f in leaks(tmp_path)) == ["device", "institution", "uid"]
    allowed = deidentified(original, "113109", "113110", "113112")
    allowed.StationName = "CTSCANNER01"
    allowed.InstitutionName = "Beijing Union Hospital"
    allowed.StudyInstanceUID = original.StudyInstanceUID
    save(allowed, tmp_path / "deid" / "a.dcm")
    assert leaks(tmp_path) == []


def test_descriptions_are_allowed_after_clean_descriptors(
    tmp_path: Path, original: Dataset
) -> None:
    kept = deidentified(original, "113105")
    kept.StudyDescription = "CT CHEST"
    save(kept, tmp_path / "deid" / "a.dcm")
    assert leaks(tmp_path) == []
    kept = deidentified(original)
    kept.StudyDescription = "CT CHEST"
    save(kept, tmp_path / "deid" / "a.dcm")
    assert [f.kind for f in leaks(tmp_path)] == ["free_text"]


# ----------------------------------------------------------------------- folders, exit codes
def test_every_original_is_searched_in_every_deid_file(tmp_path: Path) -> None:
    first, second = ct_original(), ct_original()
    second.PatientName = "LIU^YANG"
    second.PatientID = "PID20249999"
    save(first, tmp_path / "orig" / "p1" / "a.dcm")
    save(second, tmp_path / "orig" / "p2" / "b.dcm")
    leaky = deidentified(first)
    leaky.ImageComments = "compare with PID20249999"
    save(leaky, tmp_path / "deid" / "deep" / "er" / "0001.dcm")
    save(deidentified(second), tmp_path / "deid" / "0002.dcm")
    result = verify_paths(tmp_path / "orig", tmp_path / "deid")
    assert result.files_checked == 2 and result.originals_read == 2
    assert [(f.deid_file, f.kind) for f in result.leaks] == [("deep/er/0001.dcm", "id")]


@pytest.mark.parametrize("with_key", [False, True])
def test_an_original_with_an_undecodable_value_is_still_searched_for(
    tmp_path: Path, keys: Keys, with_key: bool
) -> None:
    """Damaged originals from the wild (a PatientID whose VR reads "Lg"): verify-deid used
    to stop with a traceback when given the key; the ID is still looked for."""
    first = ct_original()
    damaged = save(first, tmp_path / "orig" / "1.dcm")
    damaged.write_bytes(with_damaged_vr(damaged.read_bytes(), b"PID20240001", b"Lg"))
    clean = deidentified(first)
    save(clean, tmp_path / "deid" / "a.dcm")
    console = Console(record=True, width=200)
    code = run_verify(tmp_path / "orig", tmp_path / "deid", console=console,
                      keys=keys if with_key else None)
    assert code == 0, console.export_text()

    clean.ImageComments = "patient PID20240001"
    save(clean, tmp_path / "deid" / "a.dcm")
    result = verify_paths(tmp_path / "orig", tmp_path / "deid", keys if with_key else None)
    assert [(f.location, f.kind) for f in result.leaks] == [("ImageComments", "id")]


def test_leak_exits_one_and_report_holds_only_masked_values(
    tmp_path: Path, original: Dataset
) -> None:
    leaky = deidentified(original)
    leaky.ImageComments = "ZHANG WEI 张伟 PID20240001 ACC778899 19800507 RP-2024-99"
    leaky.InstitutionName = "Beijing Union Hospital"
    leaky.add_new(0x00090010, "LO", "ACME PRIVATE")
    leaky.add_new(0x00091001, "LO", "secret private note")
    save(leaky, tmp_path / "deid" / "x.dcm")
    report = tmp_path / "out" / "report.json"
    code, out = run(tmp_path, report=report)
    assert code == 1
    data = json.loads(report.read_text("utf-8"))
    assert data["leak_count"] == len(data["leaks"]) >= 8
    for value in ORIGINAL_VALUES:
        assert value not in out
        assert value not in report.read_text("utf-8")
    for leak in data["leaks"]:
        assert "***" in leak["masked"]


def test_masked_values_never_equal_the_value() -> None:
    for value in ["ZHANG", "Zhang Wei", "张伟", "1234567890", "AB", "Z***i", "A***", "****"]:
        assert mask(value) != value
        assert len(mask(value).replace("*", "")) <= 2
    assert mask("Zhang Wei") == "Z***i"


def test_missing_inputs_exit_two_without_traceback(tmp_path: Path) -> None:
    code, out = run(tmp_path)
    assert code == 2
    assert "not found" in out and "Traceback" not in out


def test_empty_deid_folder_exits_two(tmp_path: Path, original: Dataset) -> None:
    (tmp_path / "deid").mkdir()
    code, out = run(tmp_path)
    assert code == 2 and "no files" in out


def test_originals_without_dicom_exit_two(tmp_path: Path) -> None:
    (tmp_path / "orig").mkdir()
    (tmp_path / "orig" / "README.txt").write_text("not dicom")
    save(deidentified(ct_original()), tmp_path / "deid" / "x.dcm")
    code, out = run(tmp_path)
    assert code == 2 and "no readable DICOM" in out


def test_corrupt_original_exits_two_and_masks_its_path(tmp_path: Path, original: Dataset) -> None:
    bad = tmp_path / "orig" / "ZHANG_WEI" / "2.dcm"
    bad.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    save(deidentified(original), tmp_path / "deid" / "x.dcm")
    code, out = run(tmp_path)
    assert code == 2
    assert "could not be read" in out and "ZHANG" not in out


def test_a_corrupt_original_does_not_hide_the_leaks_of_the_others(tmp_path: Path, original: Dataset) -> None:
    """One unreadable original (a truncated file that deid rejected, in real test sets)
    stopped the whole check: the other files' leaks went unreported."""
    bad = tmp_path / "orig" / "ZHANG_WEI" / "2.dcm"
    bad.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    leaky = deidentified(original)
    leaky.StudyDescription = str(original.PatientName)
    save(leaky, tmp_path / "deid" / "x.dcm")
    code, out = run(tmp_path)
    assert code == 1
    assert "StudyDescription" in out and "could not be read" in out and "ZHANG" not in out


def test_single_files_can_be_compared(tmp_path: Path, original: Dataset) -> None:
    clean = save(deidentified(original), tmp_path / "deid" / "x.dcm")
    result = verify_paths(tmp_path / "orig" / "ZHANG_WEI" / "1.dcm", clean)
    assert result.ok and result.files_checked == 1


def _patient(i: int, tmp_path: Path) -> Dataset:
    """The ``i``-th of several patients, saved as ``orig/<i>.dcm``."""
    ds = ct_original()
    ds.PatientID = f"PID{i:08d}"
    ds.PatientName = f"PATIENT{i:03d}^GIVEN{i:03d}"
    save(ds, tmp_path / "orig" / f"{i}.dcm")
    return ds


def test_many_files_are_checked_quickly(tmp_path: Path) -> None:
    import time

    for i in range(40):
        save(deidentified(_patient(i, tmp_path)), tmp_path / "deid" / f"{i}.dcm")
    started = time.perf_counter()
    result = verify_paths(tmp_path / "orig", tmp_path / "deid")
    assert result.ok and result.files_checked == 40
    assert time.perf_counter() - started < 10


def test_safe_private_values_are_allowed_under_113111_only(tmp_path: Path, original: Dataset) -> None:
    """A value on the reviewed safe private list (GE's ScanPitchRatio) that Retain Safe
    Private kept is not a leak; the same value off the list, or without the option, is."""
    original.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x27, "SH", "/1.375:1.9")
    original.private_block(0x0045, "ACME_NOTES", create=True).add_new(0x10, "LO", "ROOM-7731-B")
    save(original, tmp_path / "orig" / "ZHANG_WEI" / "1.dcm")
    kept = deidentified(original, "113111")
    kept.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x27, "SH", "/1.375:1.9")
    save(kept, tmp_path / "deid" / "a.dcm")
    assert leaks(tmp_path) == []
    kept.private_block(0x0045, "ACME_NOTES", create=True).add_new(0x10, "LO", "ROOM-7731-B")
    save(kept, tmp_path / "deid" / "a.dcm")
    assert [f.kind for f in leaks(tmp_path)] == ["private"]
    plain = deidentified(original)
    plain.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x27, "SH", "/1.375:1.9")
    save(plain, tmp_path / "deid" / "a.dcm")
    assert [f.kind for f in leaks(tmp_path)] == ["private"]


# ------------------------------------------------- inside attributes an option keeps
def _station_original() -> Dataset:
    """A vendor's private copy of part of the station name, and a patient named in it."""
    ds = ct_original()
    ds.StationName = "AKRON GENERAL CT2"
    ds.InstitutionName = "WANG MEMORIAL CLINIC"
    ds.PatientName = "WANG^LEI"
    ds.add_new(0x00091002, "LO", "AKRON GENERAL")
    return ds


def _kept_station_copy(original: Dataset, *codes: str) -> Dataset:
    kept = deidentified(original, *codes)
    kept.StationName = original.StationName
    kept.InstitutionName = original.InstitutionName
    return kept


def test_private_text_inside_a_kept_station_name_is_listed_apart_not_counted(tmp_path: Path) -> None:
    original = _station_original()
    save(original, tmp_path / "orig" / "1.dcm")
    save(_kept_station_copy(original, "113109", "113112"), tmp_path / "deid" / "a.dcm")
    result = verify_paths(tmp_path / "orig", tmp_path / "deid")
    # the patient's family name inside the kept institution name is still a leak
    assert [(f.location, f.kind) for f in result.leaks] == [("InstitutionName", "name")]
    assert [(f.location, f.kind, f.kept_by) for f in result.kept] == [
        ("StationName", "private", "retain_device_identity")]
    assert "AKRON" not in repr(result)

    code, out = run(tmp_path)
    assert code == 1 and "declared option keeps" in out and "retain_device_identity" in out


def test_a_kept_attribute_finding_counts_without_the_option_or_with_strict(tmp_path: Path) -> None:
    original = _station_original()
    original.InstitutionName = "Beijing Union Hospital"
    save(original, tmp_path / "orig" / "1.dcm")
    save(_kept_station_copy(original, "113109", "113112"), tmp_path / "deid" / "a.dcm")
    code, _ = run(tmp_path)
    assert code == 0  # the one finding is kept by Retain Device Identity
    report = tmp_path / "r.json"
    code, _ = run(tmp_path, strict=True, report=report)
    assert code == 1
    payload = json.loads(report.read_text())
    assert [(f["location"], f["kind"]) for f in payload["leaks"]] == [("StationName", "private")]
    assert payload["kept_by_declared_options_count"] == 0
    # without the declaration the station name itself is the leak
    save(_kept_station_copy(original, "113112"), tmp_path / "deid" / "a.dcm")
    assert ("StationName", "device") in {(f.location, f.kind) for f in leaks(tmp_path)}


def test_a_kept_attribute_holding_another_value_than_the_originals_is_searched_as_ever(
    tmp_path: Path,
) -> None:
    original = _station_original()
    original.InstitutionName = "Beijing Union Hospital"
    save(original, tmp_path / "orig" / "1.dcm")
    kept = _kept_station_copy(original, "113109", "113112")
    kept.StationName = "AKRON GENERAL CT9"  # not what any original held there
    save(kept, tmp_path / "deid" / "a.dcm")
    result = verify_paths(tmp_path / "orig", tmp_path / "deid")
    assert [(f.location, f.kind) for f in result.leaks] == [("StationName", "private")]
    assert result.kept == []


# ------------------------------------- values the originals hold in attributes that do not identify
def _holding_the_id_in_an_unlisted_attribute() -> Dataset:
    """The patient's ID is also what the originals hold in an attribute Annex E does not
    list (and so keeps): a model name "ZX4471"."""
    ds = ct_original()
    ds.PatientID = "ZX4471"
    ds.ManufacturerModelName = "ZX4471"
    return ds


def _findings(tmp_path: Path, original: Dataset, clean: Dataset) -> list[tuple[str, str]]:
    """Save ``original`` and its de-identified ``clean`` and verify: each leak's (location, kind)."""
    save(original, tmp_path / "orig" / "1.dcm")
    save(clean, tmp_path / "deid" / "a.dcm")
    return sorted((f.location, f.kind) for f in leaks(tmp_path))


def _plant(ds: Dataset, where: str, value: str) -> None:
    if where == "private":
        ds.private_block(0x0011, "ACME NOTES", create=True).add_new(0x01, "LO", value)
    else:
        setattr(ds, where, value)


@pytest.mark.parametrize(
    ("where", "location"),
    [("PatientComments", "PatientComments"), ("OtherPatientIDs", "OtherPatientIDs"),
     ("private", "(0011,1001)")],
)
def test_an_id_equal_to_a_kept_value_is_a_leak_outside_that_attribute(
    tmp_path: Path, where: str, location: str
) -> None:
    """Fail closed: a non-identifying value of the originals excuses the same text only in
    the attribute that held it, not everywhere."""
    original = _holding_the_id_in_an_unlisted_attribute()
    clean = deidentified(original)
    clean.ManufacturerModelName = "ZX4471"
    assert _findings(tmp_path, original, clean) == []  # kept where the original kept it: no false alarm

    _plant(clean, where, "ZX4471")
    assert _findings(tmp_path, original, clean) == [(location, "id")]


def test_an_id_in_another_kept_attribute_than_the_originals_held_it_in_is_a_leak(
    tmp_path: Path,
) -> None:
    original = _holding_the_id_in_an_unlisted_attribute()
    clean = deidentified(original)
    clean.DeviceSerialNumber = "ZX4471"  # listed by Annex E; SoftwareVersions is not
    clean.SoftwareVersions = "ZX4471"
    assert _findings(tmp_path, original, clean) == [
        ("DeviceSerialNumber", "id"), ("SoftwareVersions", "id")]


def test_a_surname_equal_to_a_kept_value_is_a_leak_in_free_text(tmp_path: Path) -> None:
    """A vendor named like the patient: its kept name is no leak, the surname in a comment is."""
    original = ct_original()
    original.PatientName = "KOWALSKI^JAN"
    original.Manufacturer = "KOWALSKI"
    clean = deidentified(original)
    clean.Manufacturer = "KOWALSKI"
    assert _findings(tmp_path, original, clean) == []
    clean.ImageComments = "seen by Dr. Kowalski"
    assert _findings(tmp_path, original, clean) == [("ImageComments", "name")]
    assert verify_paths(tmp_path / "orig", tmp_path / "deid").needles >= 3


def test_a_name_inside_a_kept_value_that_equals_the_whole_name_is_still_a_leak(
    tmp_path: Path,
) -> None:
    """The whole kept value is excused where the original held it; a person's surname
    inside it is reported there, as it is inside any other kept value."""
    original = ct_original()
    original.PatientName = "KOWALSKI^JAN"
    original.ManufacturerModelName = "KOWALSKI JAN"
    clean = deidentified(original)
    clean.ManufacturerModelName = "KOWALSKI JAN"
    assert _findings(tmp_path, original, clean) == [("ManufacturerModelName", "name")]


def _vendor_named_like(surname: str, *, same_patient: bool) -> tuple[Dataset, Dataset]:
    """Two originals: a patient called ``surname``, and a file whose kept Manufacturer holds
    that word, of another patient or (``same_patient``) of the same one."""
    named = ct_original()
    named.PatientName = f"{surname}^PATIENT"
    named.PatientID = "PID-NAMED-1"
    vendor = ct_original()
    vendor.PatientName = f"{surname}^PATIENT" if same_patient else "LIU^YANG"
    vendor.PatientID = "PID-NAMED-1" if same_patient else "PID-OTHER-2"
    vendor.Manufacturer = f"Manufacturer {surname.lower()} here"
    return named, vendor


@pytest.mark.parametrize("same_patient", [False, True])
def test_another_patients_name_word_inside_a_kept_vendor_value_is_no_leak(
    tmp_path: Path, same_patient: bool
) -> None:
    """pydicom's test files: a patient "NAME^PATIENT^NAME" and another patient's
    Manufacturer "Manufacturer name here" -- a coincidence of words, not a leak.  The same
    word inside a kept value of that patient's own files is still reported (fail closed),
    and so is it anywhere the originals did not hold it."""
    named, vendor = _vendor_named_like("NAME", same_patient=same_patient)
    save(named, tmp_path / "orig" / "1.dcm")
    save(vendor, tmp_path / "orig" / "2.dcm")
    save(deidentified(named), tmp_path / "deid" / "1.dcm")
    clean = deidentified(vendor)
    clean.Manufacturer = vendor.Manufacturer
    save(clean, tmp_path / "deid" / "2.dcm")
    found = [(f.deid_file, f.location, f.kind) for f in leaks(tmp_path)]
    assert found == ([("2.dcm", "Manufacturer", "name")] if same_patient else [])

    clean.ImageComments = "name"  # the word where no original held it
    save(clean, tmp_path / "deid" / "2.dcm")
    found = sorted((f.location, f.kind) for f in leaks(tmp_path))
    assert ("ImageComments", "name") in found


def test_another_patients_name_word_is_excused_only_at_the_path_that_held_it(
    tmp_path: Path,
) -> None:
    """The kept vendor text carried into another attribute is searched as ever."""
    named, vendor = _vendor_named_like("NAME", same_patient=False)
    save(named, tmp_path / "orig" / "1.dcm")
    save(vendor, tmp_path / "orig" / "2.dcm")
    clean = deidentified(vendor)
    clean.Manufacturer = vendor.Manufacturer
    clean.ManufacturerModelName = vendor.Manufacturer  # never held there
    save(clean, tmp_path / "deid" / "2.dcm")
    assert [(f.location, f.kind) for f in leaks(tmp_path)] == [("ManufacturerModelName", "name")]


def test_private_text_inside_a_kept_value_is_excused_only_in_that_attribute(tmp_path: Path) -> None:
    """A vendor's private note "ACME ULTRA" inside the kept model name "ACME ULTRA 3T" is
    vocabulary there; the same note in a comment is a private value that survived."""
    original = ct_original()
    original.ManufacturerModelName = "ACME ULTRA 3T"
    original.add_new(0x00091002, "LO", "ACME ULTRA")
    clean = deidentified(original)
    clean.ManufacturerModelName = "ACME ULTRA 3T"
    assert _findings(tmp_path, original, clean) == []
    clean.ImageComments = "ACME ULTRA 3T"
    assert _findings(tmp_path, original, clean) == [("ImageComments", "private")]


def test_the_kept_vendor_name_excuses_the_institution_only_in_the_vendor_attribute(
    tmp_path: Path,
) -> None:
    ds = ct_original()
    ds.Manufacturer, ds.InstitutionName = "TOSHIBA_MEC", "TOSHIBA"
    clean = deidentified(ds)
    clean.Manufacturer = "TOSHIBA_MEC"
    clean.ImageComments = "TOSHIBA_MEC"
    assert _findings(tmp_path, ds, clean) == [("ImageComments", "institution")]


@pytest.mark.parametrize(
    ("held", "written"),
    [("CHEST CT ANGIO", "CHEST CT ANGIO"),
     # Clean Structured Content rewrote the meaning (identity scrubbed out): it no longer
     # equals what was held, and the procedure's words in it are still no leak there
     ("CHEST CT ANGIO FOR NOWAK", "CHEST CT ANGIO FOR")],
)
def test_a_description_in_a_kept_code_meaning_is_excused_only_at_that_code(
    tmp_path: Path, held: str, written: str
) -> None:
    """Same attribute means same path of tags: the procedure's code meaning is kept, the
    same text as the StudyDescription that had to go, or in another sequence, is not."""
    original = ct_original()
    original.StudyDescription = "CHEST CT ANGIO"
    original.ProcedureCodeSequence = [_concept(held)]
    clean = deidentified(original)
    clean.ProcedureCodeSequence = [_concept(written)]
    assert _findings(tmp_path, original, clean) == []
    clean.StudyDescription = "CHEST CT ANGIO"
    clean.AnatomicRegionSequence = [_concept("Chest CT angio")]
    assert _findings(tmp_path, original, clean) == [
        ("AnatomicRegionSequence[0].CodeMeaning", "free_text"), ("StudyDescription", "free_text")]


def _concept(meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = "P5-0001"
    item.CodingSchemeDesignator = "SRT"
    item.CodeMeaning = meaning
    return item


def _moved(day: str, keys: Keys, ds: Dataset) -> str:
    """``day`` as Modified Dates moves it for ``ds``'s patient under ``keys``."""
    from safepacs.deid.actions import shift_date
    from safepacs.deid.engine import patient_key

    return shift_date(day, keys.date_offset_days(patient_key(ds)))


@pytest.mark.parametrize("whose", ["own earlier study", "another patient's birthday"])
def test_a_correctly_moved_date_that_equals_another_original_date_is_no_leak(
    tmp_path: Path, keys: Keys, whose: str
) -> None:
    """Offsets of up to ten years move a study now and then onto the day of the patient's
    earlier study, or of another patient's birth: CI's 200-file corpus failed so under one
    key in a few dozen.  A day that is one of the patient's own, correctly moved, is
    explained; an original day left unmoved is still a leak."""
    first = ct_original()
    first.StudyDate = "20200315"
    moved = _moved("20200315", keys, first)
    other = ct_original()
    other.StudyDate = "20230101"
    if whose == "own earlier study":
        other.StudyDate = moved  # same patient (same PatientID), an earlier study
    else:
        other.PatientName, other.PatientID, other.PatientBirthDate = "LIU^YANG", "PID20249999", moved
    options = Options(retain_long_modified_dates=True)
    outputs = []
    for name, ds in (("a", first), ("b", other)):
        save(ds, tmp_path / "orig" / f"{name}.dcm")
        out, _ = deidentify(ds, options, keys)
        outputs.append(save(out, tmp_path / "deid" / f"{name}.dcm"))
    assert verify_paths(tmp_path / "orig", tmp_path / "deid", keys).leaks == []

    from pydicom import dcmread

    leaky = dcmread(outputs[0])
    leaky.AcquisitionDate = "20200315"  # the original study day, not moved
    leaky.save_as(outputs[0])
    found = verify_paths(tmp_path / "orig", tmp_path / "deid", keys).leaks
    assert [(f.deid_file, f.location) for f in found] == [("a.dcm", "AcquisitionDate")]


def test_any_number_of_workers_finds_what_one_finds_and_reports_progress(tmp_path: Path) -> None:
    for i in range(12):
        copy = deidentified(_patient(i, tmp_path))
        if i % 4 == 1:
            copy.ImageComments = f"see PID{(i + 3) % 12:08d}"  # another patient's ID
        if i % 4 == 2:
            copy.StudyDescription = f"PATIENT{i:03d}"
        save(copy, tmp_path / "deid" / f"{i:02d}.dcm")
    (tmp_path / "deid" / "GIVEN005.txt").write_bytes(b"\x00 not DICOM")  # a name in the path
    seen: list[tuple[str, int, int]] = []

    one = verify_paths(tmp_path / "orig", tmp_path / "deid", workers=1)
    three = verify_paths(tmp_path / "orig", tmp_path / "deid", workers=3,
                         on_progress=lambda *step: seen.append(step))

    assert len(one.leaks) == 7 and one.unparsed_files == 1 and one.files_checked == 13
    assert three == one
    phases = list(dict.fromkeys(phase for phase, _, _ in seen))
    assert phases == ["reading originals", "searching de-identified files"]
    assert [s for s in seen if s[0] == phases[1]] == [(phases[1], n, 13) for n in range(1, 14)]
    assert seen[len(seen) - 14] == (phases[0], 12, 12)


def test_the_first_files_options_are_compiled_before_workers_are_forked(
    tmp_path: Path, original: Dataset
) -> None:
    from safepacs.deid.verify import _compile_for, read_originals

    first = save(deidentified(original, "113106"), tmp_path / "deid" / "a.dcm")
    originals = read_originals(tmp_path / "orig")
    _compile_for(first, originals)
    assert list(originals.index._matchers) == [frozenset({"retain_long_full_dates"})]
    _compile_for(tmp_path / "deid" / "gone.dcm", originals)  # unreadable: left to the search
