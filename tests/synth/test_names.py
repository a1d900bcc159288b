"""Fake identities: resident ID checksums, name components, character repertoires."""

from __future__ import annotations

import random
from datetime import date

import pytest

from safepacs.synth import names, vocab
from safepacs.synth.charsets import CHARSETS
from safepacs.synth.plan import SCRIPT_CHARSETS


def test_resident_id_check_matches_the_published_example() -> None:
    # GB 11643-1999 worked example.
    assert names.resident_id_check("11010519491231002") == "X"
    assert names.is_valid_resident_id("11010519491231002X")
    assert not names.is_valid_resident_id("110105194912310021")


@pytest.mark.parametrize("sex", ["M", "F"])
def test_resident_ids_are_valid_and_encode_birth_date_and_sex(sex: str) -> None:
    rng = random.Random(5)
    for i in range(300):
        birth = names.birth_date(rng)
        rid = names.resident_id(rng, birth, sex, want_x=i % 3 == 0)
        assert names.is_valid_resident_id(rid)
        assert rid[6:14] == f"{birth:%Y%m%d}"
        assert (int(rid[16]) % 2 == 1) == (sex == "M")
        if i % 3 == 0:
            assert rid.endswith("X")


def test_invalid_resident_ids_are_rejected() -> None:
    assert not names.is_valid_resident_id("11010519491331002X")  # month 13
    assert not names.is_valid_resident_id("1101051949123100")
    assert not names.is_valid_resident_id("11010519491231003X")  # wrong check


def test_name_components_list_family_given_and_skip_short_parts() -> None:
    assert names.name_components("Yamada^Tarou=山田^太郎=やまだ^たろう") == (
        "Yamada",
        "Tarou",
        "山田",
        "太郎",
        "やまだ",
        "たろう",
    )
    assert names.name_components("Li^Wei=李^伟") == ("Wei",)
    assert names.name_components("王建国") == ()
    assert names.name_components("Pemberton^Eleanor^Jane^Dr.") == ("Pemberton", "Eleanor", "Jane")


@pytest.mark.parametrize("script", names.SCRIPTS)
def test_every_generated_identity_fits_every_charset_of_its_script(script: str) -> None:
    rng = random.Random(11)
    for _ in range(400):
        who = names.person(rng, script, prefix="Dr." if script in ("latin", "ascii") else "")
        texts = [who.pn, who.display, names.address(rng, script), names.phone(rng, script).spoken]
        for label in SCRIPT_CHARSETS[script]:
            for text in texts:
                assert CHARSETS[label].can_encode(text), (label, text)


def test_chinese_names_outside_gb2312_exist_but_only_when_asked() -> None:
    rng = random.Random(3)
    gb2312 = CHARSETS["ISO 2022 IR 58"]
    plain = [names.person(rng, "zh") for _ in range(300)]
    assert all(gb2312.can_encode(p.pn) and "=" in p.pn for p in plain)
    modern = [names.person(rng, "zh", rare=True, bare=True) for _ in range(300)]
    assert any(not gb2312.can_encode(p.pn) for p in modern)
    assert all(CHARSETS["GB18030"].can_encode(p.pn) for p in modern)


def test_phones_have_the_expected_shapes() -> None:
    rng = random.Random(2)
    zh = [names.phone(rng, "zh") for _ in range(50)]
    assert all(len(p.short) <= 16 for s in names.SCRIPTS for p in [names.phone(rng, s)])
    assert any(p.short.startswith("+86") for p in zh)
    assert any(p.spoken.startswith("+86 ") for p in zh)
    for p in zh:
        mobile = p.short.removeprefix("+86")
        assert len(mobile) == 11 and mobile[0] == "1" and mobile[1] in "3456789"
    us = names.phone(rng, "ascii")
    assert " 555-01" in us.short


def test_email_is_on_a_reserved_domain() -> None:
    rng = random.Random(1)
    who = names.person(rng, "latin")
    mail = names.email(rng, who, date(1960, 5, 1))
    assert mail.isascii() and mail.split("@")[1] in {"example.com", "example.org", "example.net"}


def test_no_name_part_occurs_in_the_clinical_vocabulary() -> None:
    words = [w for table in (vocab.PROCEDURES, vocab.SERIES) for ws in table.values() for w in ws]
    words += vocab.REASONS + [w for ws in vocab.ETHNIC.values() for w in ws]
    text = "\n".join(words).casefold()
    rng = random.Random(8)
    for script in names.SCRIPTS:
        for _ in range(300):
            who = names.person(rng, script, rare=True, bare=True)
            for part in (who.pn, who.display, *who.components):
                assert part.casefold() not in text, part
