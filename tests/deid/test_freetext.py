"""Free-text cleaning: the file's identifiers and PHI patterns go, clinical words stay."""

from __future__ import annotations

import time

import pytest
from pydicom import Dataset

from safepacs.deid.freetext import (
    find_patterns,
    is_valid_resident_id,
    resident_id_check_digit,
    scrub_text,
)
from safepacs.deid.identifiers import Identifiers, collect_identifiers


def make_resident_id(area: str = "110105", birth: str = "19800507", seq: str = "123") -> str:
    """A fake resident ID with a valid MOD 11-2 check digit."""
    first17 = area + birth + seq
    return first17 + resident_id_check_digit(first17)


def resident_id_with_x() -> str:
    for seq in range(1000):
        rid = make_resident_id(seq=f"{seq:03d}")
        if rid.endswith("X"):
            return rid
    raise AssertionError("no X check digit in 1000 tries")


@pytest.fixture
def ids() -> Identifiers:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "ZHANG^WEI=张^伟"
    ds.PatientID = "PID20240001"
    ds.AccessionNumber = "ACC778899"
    ds.PatientBirthDate = "19800507"
    ds.StudyDate = "20240315"
    ds.ReferringPhysicianName = "LI^NA"
    ds.InstitutionName = "Beijing Union Hospital"
    return collect_identifiers(ds)


# ----------------------------------------------------------------------- resident IDs
def test_resident_id_with_valid_checksum_is_accepted() -> None:
    assert is_valid_resident_id(make_resident_id())


def test_resident_id_check_digit_x_is_accepted_in_either_case() -> None:
    rid = resident_id_with_x()
    assert is_valid_resident_id(rid)
    assert is_valid_resident_id(rid[:-1] + "x")


def test_resident_id_with_wrong_check_digit_is_rejected() -> None:
    rid = make_resident_id()
    wrong = "0" if rid[-1] != "0" else "1"
    assert not is_valid_resident_id(rid[:-1] + wrong)


@pytest.mark.parametrize("birth", ["19801332", "18000101", "20230230"])
def test_resident_id_with_impossible_birth_date_is_rejected(birth: str) -> None:
    assert not is_valid_resident_id(make_resident_id(birth=birth))


@pytest.mark.parametrize("value", ["", "12345", "1101051980050712", "11010519800507123A"])
def test_resident_id_malformed_values_are_rejected(value: str) -> None:
    assert not is_valid_resident_id(value)


# ----------------------------------------------------------------------- scrub_text
@pytest.mark.parametrize(
    "written",
    ["ZHANG^WEI", "Wei Zhang", "zhang, wei", "Zhang Wei", "ZHANGWEI", "张伟", "张 伟", "Li Na"],
)
def test_names_are_removed_in_any_order_case_and_separator(ids: Identifiers, written: str) -> None:
    out = scrub_text(f"Patient {written} came in", ids)
    assert out == "Patient *** came in"


@pytest.mark.parametrize(
    "written",
    ["20240315", "2024-03-15", "2024/03/15", "2024.03.15", "15.03.2024", "03/15/2024",
     "15/03/2024", "2024年3月15日", "2024年03月15日", "1980年5月7日", "07.05.1980"],
)
def test_dates_are_removed_in_written_forms(ids: Identifiers, written: str) -> None:
    assert scrub_text(f"seen {written}.", ids) == "seen ***."


def test_ids_and_accession_numbers_are_removed(ids: Identifiers) -> None:
    assert scrub_text("id PID20240001 acc acc778899", ids) == "id *** acc ***"


@pytest.mark.parametrize(
    "phone",
    ["13812345678", "138-1234-5678", "+86 138 1234 5678", "0086-13812345678", "010-12345678",
     "(0755)1234567", "(555) 123-4567", "+1 555 123 4567", "555-123-4567", "+44 20 7946 0958",
     "090-4321-5357", "03-1234-5678", "010-1234-5678"],
)
def test_phone_numbers_are_removed(phone: str) -> None:
    assert scrub_text(f"call {phone} now", Identifiers()) == "call *** now"


def test_emails_and_resident_ids_are_removed() -> None:
    rid = make_resident_id()
    text = f"mail zhang.wei@example.com, 身份证号{rid}, legacy 110105800507123"
    assert scrub_text(text, Identifiers()) == "mail ***, 身份证号***, legacy ***"


def test_eighteen_digits_with_bad_checksum_are_kept() -> None:
    rid = make_resident_id()
    bad = rid[:-1] + ("0" if rid[-1] != "0" else "1")
    assert scrub_text(f"ref {bad}", Identifiers()) == f"ref {bad}"


def test_clinical_words_are_kept(ids: Identifiers) -> None:
    text = "Findings: 3.5 mm nodule in right lower lobe; no pneumothorax. 右肺下叶结节。"
    assert scrub_text(text, ids) == text


def test_name_inside_a_longer_word_is_kept(ids: Identifiers) -> None:
    assert scrub_text("ZHANGJIAKOU clinic", ids) == "ZHANGJIAKOU clinic"


def test_chinese_name_is_removed_inside_chinese_prose(ids: Identifiers) -> None:
    assert scrub_text("患者张伟，男，43岁", ids) == "患者***，男，43岁"


def test_custom_replacement(ids: Identifiers) -> None:
    assert scrub_text("Zhang Wei", ids, replacement="[REMOVED]") == "[REMOVED]"


def test_empty_text_and_empty_identifiers() -> None:
    assert scrub_text("", Identifiers()) == ""
    assert scrub_text("no phi here", Identifiers()) == "no phi here"


def test_scrub_is_fast_with_many_identifiers() -> None:
    big = Identifiers(id=frozenset(f"PID{n:07d}" for n in range(5000)),
                      name=frozenset({"ZHANG^WEI"}))
    text = "Zhang Wei PID0004999 " + "normal chest radiograph without acute findings " * 2000
    scrub_text("warm", big)
    started = time.perf_counter()
    out = scrub_text(text, big)
    assert time.perf_counter() - started < 1.0
    assert out.startswith("*** *** normal chest")


# ----------------------------------------------------------------------- find_patterns
def test_find_patterns_reports_kinds_and_spans() -> None:
    rid = make_resident_id()
    text = f"id {rid} tel 13812345678 a@b.cn"
    found = find_patterns(text)
    assert [kind for kind, _ in found] == ["resident_id", "phone", "email"]
    start, end = found[0][1]
    assert text[start:end] == rid


def test_find_patterns_ignores_plain_numbers_and_dates() -> None:
    text = "slice 12345 at 2024-03-15 (05-03-2024), window 400/40, 512x512, 1.2.840.10008"
    assert find_patterns(text) == []


@pytest.mark.parametrize(
    "text,gone,kept",
    [
        ("Next of kin 赵玉兰 +86", "赵玉兰", "Next of kin"),
        ("Contact: Zhao Yulan; tel", "Zhao Yulan", "Contact:"),
        ("姓名：王芳 胸片", "王芳", "胸片"),
        ("Referred by Dr. Smith for cough", "Smith", "for cough"),
        ("Mother Mary Jones called", "Mary Jones", "called"),
    ],
)
def test_names_after_person_labels_are_removed_even_when_the_header_does_not_know_them(text, gone, kept):
    from safepacs.deid.freetext import scrub_labelled_names

    out = scrub_labelled_names(text)
    assert gone not in out and kept in out


def test_clinical_text_without_labels_is_kept():
    from safepacs.deid.freetext import scrub_labelled_names

    for text in ("CHEST PA for follow up", "No known allergies.", "name of the procedure: chest"):
        assert scrub_labelled_names(text) == text


_EMPTY = Identifiers()


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("prior exam 2023-11-02, stable", "2023-11-02"),
        ("prior exam 2023/11/2", "2023/11/2"),
        ("compared with 02.11.2023", "02.11.2023"),
        ("compared with 11/02/23", "11/02/23"),
        ("DT 20231102093000.5 end", "20231102093000.5"),
        ("复查 2023年11月2日 对比", "2023年11月2日"),
        ("上次 11月2日", "11月2日"),
        ("2023년 11월 2일 검사", "2023년 11월 2일"),
        ("seen 2 Nov 2023 in clinic", "2 Nov 2023"),
        ("seen 02-NOV-2023", "02-NOV-2023"),
        ("seen November 2, 2023", "November 2, 2023"),
        ("since Nov 2023", "Nov 2023"),
    ],
)
def test_a_date_the_header_does_not_hold_goes_when_dates_are_not_kept(text: str, date: str) -> None:
    """An earlier exam's date dates the patient as well as the header's own (PS3.15 keeps no
    date without a Retain Longitudinal option): removed; kept when the run keeps dates."""
    assert date in text
    cleaned = scrub_text(text, _EMPTY, dates=True)
    assert date not in cleaned and "***" in cleaned
    assert scrub_text(text, _EMPTY) == text  # Full Dates: the text as written


@pytest.mark.parametrize(
    "text",
    ["protocol v2.1.12 kVp 120", "UID 1.2.840.10008.5.1.4.1.1.2", "ratio 1.5/2.0", "series 3/4",
     "may be 2024 later", "T2 FLAIR 5mm 2024 model", "slice 512/512"],
)
def test_numbers_that_are_no_date_stay_when_dates_go(text: str) -> None:
    assert scrub_text(text, _EMPTY, dates=True) == text
