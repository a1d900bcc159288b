"""The ISO 2022 codec against the byte strings printed in PS3.5 Annexes H, I and K."""

from __future__ import annotations

import pytest

from safepacs.synth.charsets import CHARSETS, decode, encode

ESC = b"\x1b"


def test_japanese_person_name_matches_ps3_5_h_3_1() -> None:
    value = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    expected = (
        b"Yamada^Tarou="
        + ESC
        + b"$B;3ED"
        + ESC
        + b"(B^"
        + ESC
        + b"$BB@O:"
        + ESC
        + b"(B="
        + ESC
        + b"$B$d$^$@"
        + ESC
        + b"(B^"
        + ESC
        + b"$B$?$m$&"
        + ESC
        + b"(B"
    )
    assert encode(value, CHARSETS["ISO 2022 IR 87"], "PN") == expected


def test_korean_person_name_matches_ps3_5_i_2() -> None:
    value = "Hong^Gildong=洪^吉洞=홍^길동"
    expected = (
        b"Hong^Gildong="
        + ESC
        + b"$)C\xfb\xf3^"
        + ESC
        + b"$)C\xd1\xce\xd4\xd7="
        + ESC
        + b"$)C\xc8\xab^"
        + ESC
        + b"$)C\xb1\xe6\xb5\xbf"
    )
    assert encode(value, CHARSETS["ISO 2022 IR 149"], "PN") == expected


def test_chinese_person_name_matches_ps3_5_k_2() -> None:
    value = "Zhang^XiaoDong=张^小东"
    expected = b"Zhang^XiaoDong=" + ESC + b"$)A\xd5\xc5^" + ESC + b"$)A\xd0\xa1\xb6\xab"
    assert encode(value, CHARSETS["ISO 2022 IR 58"], "PN") == expected


@pytest.mark.parametrize("label", ["ISO 2022 IR 58", "ISO 2022 IR 149"])
def test_designation_is_repeated_after_each_line_break(label: str) -> None:
    text = {"ISO 2022 IR 58": "第一行\r\n第二行", "ISO 2022 IR 149": "첫째 줄\r\n둘째 줄"}[label]
    raw = encode(text, CHARSETS[label], "LT")
    assert raw.count(CHARSETS[label].escape.encode()) == 2
    assert decode(raw, CHARSETS[label], "LT") == text


@pytest.mark.parametrize("label", list(CHARSETS))
def test_round_trip(label: str) -> None:
    samples = {
        "ISO_IR 6": "Pemberton^Eleanor",
        "ISO_IR 100": "Þórsson^Agnès",
        "ISO_IR 192": "欧阳^思䶮 홍길동 山田",
        "GB18030": "Ouyang^Siyan=欧阳^思䶮",
        "ISO 2022 IR 58": "Wang^Jianguo=王^建国",
        "ISO 2022 IR 87": "Suzuki^Hanako=鈴木^花子=すずき^はなこ",
        "ISO 2022 IR 149": "Kim^Minjun=金^敏俊=김^민준",
    }
    cs = CHARSETS[label]
    assert decode(encode(samples[label], cs, "PN"), cs, "PN") == samples[label]


def test_characters_outside_the_set_are_refused() -> None:
    assert not CHARSETS["ISO 2022 IR 58"].can_encode("思䶮")
    assert not CHARSETS["ISO_IR 100"].can_encode("王")
    assert not CHARSETS["ISO 2022 IR 87"].can_encode("홍")
    with pytest.raises(UnicodeEncodeError):
        encode("王", CHARSETS["ISO_IR 6"], "LO")
