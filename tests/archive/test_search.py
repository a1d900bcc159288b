"""QIDO matching over the index, on SQLite and PostgreSQL; identity only for those allowed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from safepacs.archive import Archive
from safepacs.deid.options import Options
from tests.archive.objects import ct_bytes
from tests.people import clinician_principal as clinician
from tests.people import reader

#: (patient ID, name, study date, accession, modality) -> one study each, two series for the first
PEOPLE = [
    ("PID-A-001", "ZHANG^WEI=张^伟", "20240105", "ACC-1", "CT"),
    ("PID-A-001", "ZHANG^WEI=张^伟", "20240610", "ACC-2", "MR"),
    ("PID-B-002", "WANG^FANG", "20231231", "ACC-3", "CT"),
    ("PID-C-003", "MÜLLER^HANS", "20240301", "ACC-4", "MR"),
]


@pytest.fixture
def filled(archive_dir, database_url) -> Iterator[tuple[Archive, list]]:
    """An archive keeping full dates (so date ranges have something to match)."""
    arch, _ = Archive.create(
        archive_dir, database_url=database_url, deid_options=Options(retain_long_full_dates=True)
    )
    stored = []
    for i, (pid, name, date, acc, mod) in enumerate(PEOPLE):
        for j in range(2 if i == 0 else 1):
            stored.append(
                arch.ingest(
                    ct_bytes(f"1.2.9.{i}.{j}", study=f"1.2.9.{i}", series=f"1.2.9.{i}.{j}.1",
                             patient_id=pid, name=name, study_date=date, accession=acc, modality=mod),
                    source="t",
                )
            )
    try:
        yield arch, stored
    finally:
        arch.close()


def _uids(results, keyword="StudyInstanceUID") -> set[str]:
    return {str(ds.get(keyword)) for ds in results}


def test_study_search_returns_the_required_attributes(filled):
    arch, stored = filled
    results = arch.search("study", {}, principal=reader(arch))
    assert len(results) == 4
    ds = next(d for d in results if d.StudyInstanceUID == stored[0].study_uid)
    for kw in ("StudyDate", "PatientID", "PatientName", "ModalitiesInStudy", "AccessionNumber",
               "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "StudyID"):
        assert kw in ds, kw
    assert ds.NumberOfStudyRelatedSeries == 2 and ds.NumberOfStudyRelatedInstances == 2
    assert ds.ModalitiesInStudy == "CT" and ds.StudyDate == "20240105"
    assert ds.PatientID.startswith("SP") and str(ds.PatientName) == ""


@pytest.mark.parametrize(
    "value, dates",
    [("20240105", {"20240105"}), ("20240101-20240331", {"20240105", "20240301"}),
     ("-20240101", {"20231231"}), ("20240301-", {"20240301", "20240610"}), ("", None)],
)
def test_study_date_matching(filled, value, dates):
    arch, _ = filled
    found = {str(d.StudyDate) for d in arch.search("study", {"StudyDate": value}, principal=reader(arch))}
    assert found == (dates or {"20240105", "20240610", "20231231", "20240301"})


def test_modalities_uid_lists_limit_offset(filled):
    arch, stored = filled
    assert len(arch.search("study", {"ModalitiesInStudy": "MR"}, principal=reader(arch))) == 2
    assert len(arch.search("study", {"ModalitiesInStudy": "CT\\MR"}, principal=reader(arch))) == 4
    two = f"{stored[0].study_uid}\\{stored[3].study_uid}"
    assert _uids(arch.search("study", {"StudyInstanceUID": two}, principal=reader(arch))) == {
        stored[0].study_uid, stored[3].study_uid}
    all_ = [d.StudyInstanceUID for d in arch.search("study", {}, principal=reader(arch))]
    page = [d.StudyInstanceUID for d in arch.search("study", {}, principal=reader(arch), limit=2, offset=1)]
    assert page == all_[1:3]
    assert arch.search("study", {}, principal=reader(arch), offset=10) == []


def test_pseudonymous_patient_id_with_wildcards(filled):
    arch, stored = filled
    pid = arch.search("study", {"StudyInstanceUID": stored[0].study_uid}, principal=reader(arch))[0].PatientID
    assert len(arch.search("study", {"PatientID": pid}, principal=reader(arch))) == 2
    assert len(arch.search("study", {"PatientID": pid[:6] + "*"}, principal=reader(arch))) >= 2
    assert len(arch.search("study", {"PatientID": "SP*"}, principal=reader(arch))) == 4
    assert arch.search("study", {"PatientID": "SP%"}, principal=reader(arch)) == []  # % is literal


def test_series_and_instance_levels_and_includefield(filled):
    arch, stored = filled
    series = arch.search("series", {}, principal=reader(arch), study_uid=stored[0].study_uid)
    assert {d.SeriesInstanceUID for d in series} == {stored[0].series_uid, stored[1].series_uid}
    assert all(d.Modality == "CT" and "NumberOfSeriesRelatedInstances" in d for d in series)
    mr = arch.search("series", {"Modality": "MR"}, principal=reader(arch))
    assert len(mr) == 2 and all("PatientID" in d for d in mr)  # all-series search: study attrs too
    inst = arch.search("instance", {"SOPInstanceUID": stored[2].sop_instance_uid}, principal=reader(arch))
    assert [d.SOPInstanceUID for d in inst] == [stored[2].sop_instance_uid]
    assert inst[0].Rows == 4 and inst[0].SOPClassUID == stored[2].sop_class_uid
    with_extra = arch.search("series", {}, principal=reader(arch), include=["PatientSex", "StudyDescription"],
                             study_uid=stored[0].study_uid)
    assert all("StudyDescription" in d and "PatientSex" in d for d in with_extra)


@pytest.mark.parametrize(
    "filters",
    [{"StudyDate": "2024-01-01"}, {"StudyDate": "20241231-20240101"}, {"StudyInstanceUID": "../x"},
     {"StudyInstanceUID": "1.2.*"}, {"NoSuchKeyword": "x"}, {"SeriesNumber": "abc"},
     {"SOPInstanceUID": "1.2.3"}],
)
def test_malformed_filters_raise_value_error(filled, filters):
    arch, _ = filled
    with pytest.raises(ValueError):
        arch.search("study", filters, principal=reader(arch))


# --- identity ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "filters, studies",
    [({"PatientID": "PID-A-001"}, 2), ({"PatientID": "PID-?-00*"}, 4), ({"PatientName": "ZHANG^WEI"}, 2),
     ({"PatientName": "zhang^wei"}, 2), ({"PatientName": "张^伟"}, 2), ({"PatientName": "张*"}, 2),
     ({"PatientName": "W*"}, 1), ({"PatientName": "MÜLLER^HANS"}, 1), ({"AccessionNumber": "ACC-3"}, 1),
     ({"PatientName": "ZHANG^WEI", "StudyDate": "20240601-"}, 1)],
)
def test_identified_reader_finds_patients_by_original_identity(filled, filters, studies):
    arch, _ = filled
    assert len(arch.search("study", filters, principal=clinician(arch))) == studies
    assert arch.search("study", filters, principal=reader(arch)) == []


def test_identified_reader_sees_original_names_intact_others_only_pseudonyms(filled):
    arch, stored = filled
    seen = arch.search("study", {"StudyInstanceUID": stored[0].study_uid}, principal=clinician(arch))[0]
    assert str(seen.PatientName) == "ZHANG^WEI=张^伟" and seen.PatientID == "PID-A-001"
    hidden = arch.search("study", {"StudyInstanceUID": stored[0].study_uid}, principal=reader(arch))[0]
    assert str(hidden.PatientName) == "" and hidden.PatientID.startswith("SP")


def test_identity_index_survives_reopen(filled, archive_dir, database_url):
    arch, _ = filled
    arch.close()
    again = Archive.open(archive_dir, database_url=database_url)
    try:
        assert len(again.search("study", {"PatientName": "张^伟"}, principal=clinician(again))) == 2
    finally:
        again.close()


def test_identities_stored_by_another_process_are_found(filled, archive_dir, database_url):
    arch, _ = filled
    assert arch.search("study", {"PatientName": "LI^NA"}, principal=clinician(arch)) == []
    other = Archive.open(archive_dir, database_url=database_url)  # e.g. `safepacs import`
    try:
        other.ingest(ct_bytes("1.2.9.9.1", study="1.2.9.9", series="1.2.9.9.2", patient_id="PID-D-4",
                              name="LI^NA"), source="import")
    finally:
        other.close()
    assert len(arch.search("study", {"PatientName": "LI^NA"}, principal=clinician(arch))) == 1


def test_an_exact_original_id_is_found_by_its_keyed_hash_and_confirmed_by_the_sealed_entry(filled):
    """Exact IDs go through the indexed keyed hash, not a scan of every entry; a hash row
    that points elsewhere (a damaged or altered index) finds nothing the sealed entry denies."""
    from sqlalchemy import update

    from safepacs.index.models import Identity

    arch, _ = filled
    doc = clinician(arch)
    assert len(arch.search("study", {"PatientID": "PID-A-001 "}, principal=doc)) == 2  # padded as sent
    assert arch.search("study", {"PatientID": "PID-A-00"}, principal=doc) == []  # exact is exact
    wanted = arch._identity.id_hash("PID-A-001")
    with arch._engine.begin() as conn:  # every entry's hash now claims to be PID-A-001's
        conn.execute(update(Identity).values(id_hash=wanted))
    found = arch.search("study", {"PatientID": "PID-A-001"}, principal=doc)
    assert len(found) == 2 and {d.PatientID for d in found} == {"PID-A-001"}
    assert arch.search("study", {"PatientID": "PID-B-002"}, principal=doc) == []  # its hash is gone
    assert len(arch.search("study", {"PatientID": "PID-B-*"}, principal=doc)) >= 1  # wildcards scan
