"""The identity decision on OCR text: header values, patterns, markers, modes."""

from __future__ import annotations

import pytest
from pydicom import Dataset

from safepacs.deid.pixels.decide import (
    BoxShape,
    HeaderNeedles,
    decide,
    fold,
    header_needles,
    identity_rule,
    marker_kind,
    needs_second_look,
    pattern_rule,
    same_reading,
    within,
)

LINE = BoxShape(glyph_sized=False, blobs=12, aspect=8.0, in_border=True)
GLYPH = BoxShape(glyph_sized=True, blobs=1, aspect=0.8, in_border=True)
NONE = HeaderNeedles()


def header() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Lindqvist^Gregory"
    ds.OtherPatientNames = "Shangguan^Yuxuan=上官^雨萱"
    ds.PatientID = "PID58213377"
    ds.PatientBirthDate = "19760616"
    ds.StudyDate = "20130713"
    ds.InstitutionName = "Maple Ridge Medical Center"
    ds.Manufacturer = "Agfa"
    return ds


@pytest.fixture(scope="module")
def needles() -> HeaderNeedles:
    return header_needles(header())


def removed(text: str, needles: HeaderNeedles, conf: float = 90.0, **kw) -> str:
    verdict = decide([(text, conf)], LINE, needles, **kw)
    assert verdict.remove, f"kept by {verdict.rule}"
    return verdict.rule


@pytest.mark.parametrize(
    "text",
    ["Lindqvist Gregory", "GREGORY LINDQVIST", "Lindqvist, Gregory", "Lindqvist^Gregory",
     "Lindgvist~ Gregory", "L1ndqvist Gregory |"],
)
def test_patient_name_matches_in_any_order_separator_and_with_ocr_errors(text, needles):
    assert removed(text, needles) in ("header:PatientName",)


def test_chinese_name_group_matches_with_one_misread_character(needles):
    assert removed("患者 上官雨草", needles, conf=40) == "header:OtherPatientNames"


@pytest.mark.parametrize(
    "text", ["DOB: 06.16.1976", "1976-06-16", "16/06/1976", "19760616", "1976年6月16日"]
)
def test_birth_date_matches_in_every_written_form(text, needles):
    assert removed(text, needles) == "header:PatientBirthDate"


def test_institution_from_header(needles):
    assert removed("Maple Ridge Medica1 Center", needles) == "header:InstitutionName"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("身份证 44010619900619371X", "pattern:resident-id"),
        ("3201021967021487 80", "pattern:resident-id"),  # OCR split the number
        ("32O1O2196702148780", "pattern:resident-id"),  # O read for 0
        ("01.09.2012", "pattern:date"),
        ("2012-01-09", "pattern:date"),
        ("09/01/2012", "pattern:date"),
        ("20120109", "pattern:date"),
        ("2012年1月9日", "pattern:date"),
        ("Jan 9, 2012", "pattern:date"),
        ("138 1234 5678", "pattern:phone"),
        ("+49 151 12345678", "pattern:phone"),
        ("MRN: 4829103", "pattern:long-number"),
        ("RP48291", "pattern:mrn"),
        ("H2801320", "pattern:long-number"),
        ("jane.doe@example.org", "pattern:email"),
        ("Name: Somebody Else", "label:name"),
        ("姓名: 某某", "label:name"),
        ("DOB unknown", "label:dob"),
        ("住院号 A12", "label:id"),
        ("Sex: F", "label:demographic"),
        ("Harborview Clinic", "pattern:institution"),
        ("青禾市第三人民医院", "pattern:institution"),
        ("赵男", "pattern:cjk-name"),
        ("10:15:30", "pattern:time"),
    ],
)
def test_patterns_remove_identity_the_header_does_not_hold(text, rule):
    assert pattern_rule(text) == rule
    assert removed(text, NONE) == rule


@pytest.mark.parametrize("text", ["上官雨萱", "欧阳明", "诸葛亮", "司马光", "欧明"])
def test_compound_surnames_begin_a_name(text):
    assert pattern_rule(text) == "pattern:cjk-name"


@pytest.mark.parametrize("text", ["上腹", "上肢", "上此", "司令", "诸多"])
def test_the_first_character_of_a_compound_surname_alone_begins_no_name(text):
    # 上 is a surname only as 上官: alone it begins 上腹 (upper abdomen), and OCR noise
    # on a clavicle read "上此." surely enough to fail verify-deid on a real radiograph
    assert pattern_rule(text) is None


def test_mrn_that_differs_from_the_header_patient_id_is_removed_by_pattern(needles):
    rule = removed("MRN: H33426809", needles)
    assert rule.startswith("pattern:")


@pytest.mark.parametrize(
    ("text", "rule"),
    [("L", "keep:laterality"), ("R", "keep:laterality"), ("PA", "keep:position"),
     ("AP", "keep:position"), ("LAT", "keep:position"), ("左", "keep:laterality"),
     ("右", "keep:laterality"), ("卧位", "keep:position"), ("立位", "keep:position"),
     ("SUPINE", "keep:position"), ("Semi-Upright", "keep:position"), ("L PA", "keep:laterality")],
)
def test_markers_are_kept_even_when_all_text_goes(text, rule, needles):
    for mode in (False, True):
        verdict = decide([(text, 90.0)], LINE, needles, remove_all_text=mode)
        assert (verdict.remove, verdict.rule) == (False, rule)


@pytest.mark.parametrize("text", ["red green blue", "kVp 120", "WL 40 WW 400", "10 cm"])
def test_harmless_labels_are_kept_by_default_and_removed_when_all_text_goes(text, needles):
    assert decide([(text, 90.0)], LINE, needles) == decide([(text, 90.0)], LINE, needles)
    assert not decide([(text, 90.0)], LINE, needles).remove
    assert decide([(text, 90.0)], LINE, needles, remove_all_text=True).rule == "remove-all-text"


def test_unreadable_text_line_in_the_border_band_is_removed_but_a_glyph_is_kept(needles):
    assert decide([("~.,", 12.0)], LINE, needles).rule == "unreadable-text"
    assert decide([], LINE, needles).rule == "unreadable-text"
    inner = BoxShape(glyph_sized=False, blobs=12, aspect=8.0, in_border=False)
    assert not decide([("~.,", 12.0)], inner, needles).remove
    assert decide([], GLYPH, needles).rule == "keep:unreadable"


def test_noise_readings_do_not_match_names_fuzzily(needles):
    # One edit away from a header name, but read with 20% confidence: noise.
    assert identity_rule("Lindqvust", needles, 20.0) is None
    assert identity_rule("Lindqvust", needles, 90.0) == "header:PatientName"
    assert identity_rule("Lindqvlst", needles, 20.0) == "header:PatientName"  # l/i look alike


def test_rule_names_never_carry_the_text(needles):
    for text in ("Lindqvist Gregory", "19760616", "MRN: H33426809", "姓名: 上官雨萱"):
        rule = identity_rule(text, needles)
        assert rule
        assert fold(text) not in fold(rule)


def test_any_reading_of_a_box_can_remove_it(needles):
    readings = [("L1 ~x", 80.0), ("上官雨萱", 35.0)]
    assert decide(readings, LINE, needles).remove


def test_marker_kind_only_when_every_word_is_a_marker():
    assert marker_kind("L") == "laterality"
    assert marker_kind("PA ERECT") == "position"
    assert marker_kind("L Lindqvist") is None


def test_within_counts_edits():
    assert within("lindqvist", "xxlindgvistyy", 1)
    assert not within("lindqvist", "xxlindgv1styy", 0)
    assert within("abc", "zzabczz", 0)
    assert not within("abcdef", "abxxef", 1)


@pytest.mark.parametrize(
    ("rule", "text", "conf", "again"),
    [("header:PatientName", "Lindqvist", 5.0, False),
     ("pattern:date", "DOB 1976-06-16", 90.0, False),
     ("pattern:long-number", "XXXXXX2EX2332323203XX233IX1", 0.0, True),  # dithering
     ("pattern:cjk-name", "欧阳建国", 95.0, True),
     ("label:name", "Name: Somebody", 95.0, True)],
)
def test_header_values_and_sure_numbers_need_no_second_look(rule, text, conf, again):
    assert needs_second_look(rule, text, conf) is again


def test_same_reading_allows_a_stray_mark_and_not_other_noise():
    assert same_reading("DOB 1976-06-16", "DOB: 1976-06-16 |")
    assert same_reading("欧阳建国", "欧阳建国")
    assert not same_reading("XXXXXX2EX2332323203XX233IX1", "Pteccxct2222202XX22t0划")
    assert not same_reading("上此.", "ea")
    assert not same_reading("", "")
