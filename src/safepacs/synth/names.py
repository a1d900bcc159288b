"""Fake people and their identifiers, generated from small in-code lists.

Nothing here comes from real patients.  Values are made long and specific on purpose
(IDs of 8+ characters, names of 2+ ideographs or 3+ letters, phone numbers in full)
so that a substring search for a planted value cannot hit ordinary clinical text.
Each script keeps to the characters its file character sets can hold: Chinese names
used in ISO 2022 IR 58 files stay within GB2312, Japanese within JIS X 0208, Korean
within KS X 1001, Latin within ISO 8859-1.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta

from safepacs.synth import charsets

#: Scripts a synthetic person's name is written in.
SCRIPTS = ("zh", "ja", "ko", "latin", "ascii")

# (romanised, ideographic) family names; the last four are two-character surnames.
_ZH_FAMILY = [
    ("Wang", "王"),
    ("Zhang", "张"),
    ("Liu", "刘"),
    ("Chen", "陈"),
    ("Yang", "杨"),
    ("Huang", "黄"),
    ("Zhao", "赵"),
    ("Zhou", "周"),
    ("Guo", "郭"),
    ("Gao", "高"),
    ("Zheng", "郑"),
    ("Xie", "谢"),
    ("Ouyang", "欧阳"),
    ("Sima", "司马"),
    ("Zhuge", "诸葛"),
    ("Shangguan", "上官"),
]
_ZH_GIVEN_M = [
    ("Jianguo", "建国"),
    ("Zhiqiang", "志强"),
    ("Junjie", "俊杰"),
    ("Haoran", "浩然"),
    ("Minghui", "明辉"),
    ("Wenbo", "文博"),
    ("Xiaodong", "晓东"),
    ("Qiang", "强"),
    ("Peng", "鹏"),
    ("Yong", "勇"),
]
_ZH_GIVEN_F = [
    ("Xiuying", "秀英"),
    ("Guiying", "桂英"),
    ("Haiyan", "海燕"),
    ("Shufen", "淑芬"),
    ("Yulan", "玉兰"),
    ("Zihan", "子涵"),
    ("Yuxuan", "雨萱"),
    ("Lijuan", "丽娟"),
    ("Chunmei", "春梅"),
    ("Jing", "静"),
]
# Given names with characters outside GB2312 (GBK / CJK Extension A): only for
# GB18030 and UTF-8 files.
_ZH_GIVEN_RARE = [
    ("Zhe", "喆", "M"),
    ("Kunpeng", "堃鹏", "M"),
    ("Siyan", "思䶮", "M"),
    ("Yuetong", "玥彤", "F"),
]

# (romanised, kanji, hiragana)
_JA_FAMILY = [
    ("Yamada", "山田", "やまだ"),
    ("Tanaka", "田中", "たなか"),
    ("Suzuki", "鈴木", "すずき"),
    ("Takahashi", "高橋", "たかはし"),
    ("Watanabe", "渡辺", "わたなべ"),
    ("Nakamura", "中村", "なかむら"),
    ("Kobayashi", "小林", "こばやし"),
    ("Yoshida", "吉田", "よしだ"),
    ("Kimura", "木村", "きむら"),
    ("Inoue", "井上", "いのうえ"),
]
_JA_GIVEN_M = [
    ("Tarou", "太郎", "たろう"),
    ("Kenji", "健二", "けんじ"),
    ("Hiroshi", "博史", "ひろし"),
    ("Takumi", "拓海", "たくみ"),
    ("Shouta", "翔太", "しょうた"),
]
_JA_GIVEN_F = [
    ("Hanako", "花子", "はなこ"),
    ("Akiko", "明子", "あきこ"),
    ("Yumiko", "由美子", "ゆみこ"),
    ("Misaki", "美咲", "みさき"),
    ("Naomi", "直美", "なおみ"),
]

# (romanised, hanja, hangul)
_KO_FAMILY = [
    ("Kim", "金", "김"),
    ("Park", "朴", "박"),
    ("Choi", "崔", "최"),
    ("Jung", "鄭", "정"),
    ("Kang", "姜", "강"),
    ("Yoon", "尹", "윤"),
    ("Jang", "張", "장"),
    ("Hong", "洪", "홍"),
    ("Shin", "申", "신"),
    ("Song", "宋", "송"),
]
_KO_GIVEN_M = [
    ("Gildong", "吉洞", "길동"),
    ("Minjun", "敏俊", "민준"),
    ("Jiho", "智浩", "지호"),
    ("Hyunwoo", "賢宇", "현우"),
    ("Dongsu", "東秀", "동수"),
]
_KO_GIVEN_F = [
    ("Eunji", "恩智", "은지"),
    ("Jiyoung", "智英", "지영"),
    ("Minseo", "敏瑞", "민서"),
    ("Sooyeon", "秀延", "수연"),
    ("Haeun", "夏恩", "하은"),
]

_LATIN_FAMILY = [
    "Müller",
    "Gonçalves",
    "Sánchez",
    "Lefèvre",
    "Jiménez",
    "Søndergaard",
    "Åkesson",
    "Núñez",
    "Østergård",
    "Brönnimann",
    "Þórsson",
    "Castañeda",
    "Fernández",
    "Schäfer",
]
_LATIN_GIVEN_M = ["José", "François", "Jürgen", "Björn", "Søren", "Ángel", "Jérôme", "Joaquín"]
_LATIN_GIVEN_F = ["Zoë", "Renée", "Agnès", "Inês", "Åsa", "Mónica", "Hélène", "Ingrið"]

_ASCII_FAMILY = [
    "Thornbury",
    "Whitaker",
    "Pemberton",
    "Holloway",
    "Okafor",
    "Lindqvist",
    "Abernathy",
    "Kowalski",
    "Delacroix",
    "Fairweather",
]
_ASCII_GIVEN_M = ["Theodore", "Marcus", "Everett", "Dominic", "Gregory"]
_ASCII_GIVEN_F = ["Margaret", "Josephine", "Eleanor", "Beatrice", "Priscilla"]
_ASCII_MIDDLE = ["Jane", "Louise", "James", "Robert", "Edward", "Marie"]

_TRANSLIT = str.maketrans(
    {"Þ": "Th", "þ": "th", "ð": "d", "Ø": "O", "ø": "o", "ß": "ss", "Æ": "Ae", "æ": "ae"}
)


def ascii_fold(text: str) -> str:
    """'Þórsson Jürgen' -> 'Thorsson Jurgen', for e-mail addresses and IDs."""
    text = unicodedata.normalize("NFKD", text.translate(_TRANSLIT))
    return text.encode("ascii", "ignore").decode("ascii")


def _min_len(text: str) -> int:
    """Shortest component worth listing: 2 ideographs/kana/hangul, 3 Latin letters."""
    return 2 if any(ord(c) >= 0x2E80 for c in text) else 3


@dataclass(frozen=True)
class Person:
    """A fake person: how the name is written in a PN value and in free text."""

    script: str
    sex: str  # "M" or "F"
    pn: str  # the DICOM PN value, e.g. "Wang^Jianguo=王^建国"
    display: str  # as written in running text, e.g. "王建国"
    romanized: str  # ASCII "Jianguo Wang", for e-mail addresses

    @property
    def components(self) -> tuple[str, ...]:
        """Family, given and middle names long enough to search for on their own."""
        return name_components(self.pn)


def name_components(pn: str) -> tuple[str, ...]:
    """Name parts of a PN value worth listing separately in the answer key."""
    parts: list[str] = []
    for group in pn.split("="):
        comps = group.split("^")
        if len(comps) < 2:
            continue  # a single-component group is the whole name, listed already
        for comp in comps[:3]:  # family, given, middle; not prefix/suffix
            comp = comp.strip()
            if comp and len(comp) >= _min_len(comp) and comp not in parts and comp != pn:
                parts.append(comp)
    return tuple(parts)


def person(
    rng: random.Random,
    script: str,
    sex: str | None = None,
    *,
    rare: bool = False,
    bare: bool = False,
    prefix: str = "",
) -> Person:
    """A random person writing their name in ``script``.

    For Chinese, ``rare`` allows given names outside GB2312 and ``bare`` allows the
    ideographs in the first (alphabetic) PN group, as many Chinese systems write it;
    both are only for names never written in ISO 2022 IR 58, where PS3.5 forbids
    escape sequences in that group.  ``prefix`` (e.g. "Dr.") goes in the PN prefix.
    """
    sex = sex or rng.choice("MF")
    if script == "zh":
        fam_r, fam_i = rng.choice(_ZH_FAMILY)
        pool = [(r, i, s) for r, i, s in _ZH_GIVEN_RARE if s == sex] if rare else []
        if pool:
            giv_r, giv_i, _ = rng.choice(pool)
        else:
            giv_r, giv_i = rng.choice(_ZH_GIVEN_M if sex == "M" else _ZH_GIVEN_F)
        form = rng.randrange(3 if bare else 2)
        if form == 0:
            pn = f"{fam_r}^{giv_r}={fam_i}^{giv_i}"
        elif form == 1:
            pn = f"{fam_r.upper()}^{giv_r.upper()}={fam_i}^{giv_i}"
        else:
            pn = f"{fam_i}{giv_i}"  # ideographs in the alphabetic group, common in China
        return Person(script, sex, pn, fam_i + giv_i, f"{giv_r} {fam_r}")
    if script == "ja":
        while True:  # three groups with escapes can pass 64 bytes; most pairs fit
            fr, fk, fh = rng.choice(_JA_FAMILY)
            gr, gk, gh = rng.choice(_JA_GIVEN_M if sex == "M" else _JA_GIVEN_F)
            pn = f"{fr}^{gr}={fk}^{gk}={fh}^{gh}"
            if len(charsets.encode(pn, charsets.IR87, "PN")) <= 64:
                return Person(script, sex, pn, fk + gk, f"{gr} {fr}")
    if script == "ko":
        fr, fk, fh = rng.choice(_KO_FAMILY)
        gr, gk, gh = rng.choice(_KO_GIVEN_M if sex == "M" else _KO_GIVEN_F)
        return Person(script, sex, f"{fr}^{gr}={fk}^{gk}={fh}^{gh}", fh + gh, f"{gr} {fr}")
    if script == "latin":
        fam = rng.choice(_LATIN_FAMILY)
        giv = rng.choice(_LATIN_GIVEN_M if sex == "M" else _LATIN_GIVEN_F)
        pn = f"{fam}^{giv}" + (f"^^{prefix}" if prefix else "")
        return Person(script, sex, pn, f"{giv} {fam}", ascii_fold(f"{giv} {fam}"))
    if script == "ascii":
        fam = rng.choice(_ASCII_FAMILY)
        giv = rng.choice(_ASCII_GIVEN_M if sex == "M" else _ASCII_GIVEN_F)
        mid = rng.choice(_ASCII_MIDDLE) if rng.random() < 0.4 else ""
        pn = (
            f"{fam}^{giv}" + (f"^{mid}" if mid or prefix else "") + (f"^{prefix}" if prefix else "")
        )
        return Person(script, sex, pn, f"{giv} {fam}", f"{giv} {fam}")
    raise ValueError(f"unknown script {script!r}")


# --- Chinese resident identity numbers (GB 11643-1999) ------------------------------

_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]  # 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
# Administrative division codes of a few city districts (public, not personal data).
_AREA_CODES = ["110105", "110108", "310115", "440106", "320102", "330106", "510107", "420106"]


def resident_id_check(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character for the first 17 digits ('0'-'9' or 'X')."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def is_valid_resident_id(number: str) -> bool:
    """True for an 18-character resident ID whose check character and birth date are valid."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return resident_id_check(number[:17]) == number[17]


def resident_id(rng: random.Random, birth: date, sex: str, *, want_x: bool = False) -> str:
    """A resident ID number for ``birth`` and ``sex`` (odd sequence digit = male).

    ``want_x`` picks a sequence number whose check character is 'X', a case that
    breaks parsers which expect 18 digits.
    """
    area = rng.choice(_AREA_CODES)
    odd = sex == "M"
    seqs = [s for s in range(1000) if (s % 2 == 1) == odd]
    rng.shuffle(seqs)
    for seq in seqs:
        first17 = f"{area}{birth:%Y%m%d}{seq:03d}"
        check = resident_id_check(first17)
        if not want_x or check == "X":
            return first17 + check
    raise AssertionError("unreachable: about 1 in 11 sequence numbers gives 'X'")


# --- contact details ---------------------------------------------------------------


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


@dataclass(frozen=True)
class Phone:
    """A telephone number as a short SH value (<= 16 chars) and as written in text."""

    short: str
    spoken: str


def phone(rng: random.Random, script: str) -> Phone:
    """A phone number in the style of ``script``'s country (US numbers in 555-01xx)."""
    if script == "zh":
        mobile = f"1{rng.choice('3456789')}{_digits(rng, 9)}"
        spaced = f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}"
        return Phone(rng.choice([mobile, "+86" + mobile]), rng.choice([mobile, spaced]))
    if script == "ja":
        a, b = _digits(rng, 4), _digits(rng, 4)
        return Phone(f"090-{a}-{b}", f"+81-90-{a}-{b}")
    if script == "ko":
        a, b = _digits(rng, 4), _digits(rng, 4)
        return Phone(f"010-{a}-{b}", f"+82-10-{a}-{b}")
    if script == "latin":
        n = _digits(rng, 8)
        return Phone(f"+49151{n}", f"+49 151 {n}")
    area = rng.choice(["415", "312", "617", "206", "512"])
    line = f"01{_digits(rng, 2)}"
    return Phone(f"({area}) 555-{line}", f"+1 {area} 555 {line}")


def email(rng: random.Random, who: Person, birth: date) -> str:
    """An e-mail address on a reserved example domain (RFC 2606)."""
    given, _, family = ascii_fold(who.romanized).lower().partition(" ")
    user = f"{given}.{family.replace(' ', '')}{birth:%y}{rng.randrange(10, 99)}"
    return f"{user}@{rng.choice(['example.com', 'example.org', 'example.net'])}"


_ZH_CITY = ["青禾市", "云溪市", "南湖市"]
_ZH_DISTRICT = ["东城区", "新华区", "城关区", "高新区"]
_ZH_ROAD = ["建设路", "人民路", "解放路", "和平街", "文化路", "长江路"]
_JA_PREF = ["東京都", "神奈川県", "愛知県"]
_JA_CITY = ["桜台市", "若葉市", "青葉区"]
_JA_TOWN = ["緑町", "中町", "栄町"]
_KO_CITY = ["한빛시", "푸른시"]
_KO_DISTRICT = ["중앙구", "동구", "남구"]
_KO_ROAD = ["푸른로", "새봄길", "한강대로"]
_LATIN_STREET = [
    ("Lindenstraße", "80331 Waldhausen"),
    ("Rua das Amoreiras", "4050-123 Vila Nova"),
    ("Calle de Alcalá", "28014 Villanueva"),
    ("Rue des Écoles", "75005 Beaumont"),
]
_US_STREET = ["Maple Ave", "Juniper Ln", "Harborview Dr", "Old Mill Rd"]
_US_TOWN = ["Springfield, IL 62704", "Riverton, WY 82501", "Fairview, OR 97024"]


def address(rng: random.Random, script: str) -> str:
    """A postal address (<= 64 characters, fits LO) in the style of ``script``."""
    n = rng.randrange(1, 300)
    if script == "zh":
        return (
            f"{rng.choice(_ZH_CITY)}{rng.choice(_ZH_DISTRICT)}{rng.choice(_ZH_ROAD)}{n}号"
            f"{rng.randrange(1, 30)}栋{rng.randrange(1, 6)}单元{rng.randrange(101, 2800)}室"
        )
    if script == "ja":
        # "3-12-5" rather than 3丁目12番5号: 目 is 0x4C 0x5C in JIS X 0208 (see charsets)
        return (
            f"{rng.choice(_JA_PREF)}{rng.choice(_JA_CITY)}{rng.choice(_JA_TOWN)}"
            f"{rng.randrange(1, 9)}-{rng.randrange(1, 30)}-{rng.randrange(1, 20)}"
        )
    if script == "ko":
        return (
            f"{rng.choice(_KO_CITY)} {rng.choice(_KO_DISTRICT)} {rng.choice(_KO_ROAD)} {n}, "
            f"{rng.randrange(101, 1500)}호"
        )
    if script == "latin":
        street, town = rng.choice(_LATIN_STREET)
        return f"{street} {n}, {town}"
    return f"{rng.randrange(100, 9999)} {rng.choice(_US_STREET)}, {rng.choice(_US_TOWN)}"


def birth_date(rng: random.Random) -> date:
    """An adult's birth date between 1935 and 2002."""
    return date(1935, 1, 1) + timedelta(days=rng.randrange(0, 68 * 365))


def random_id(rng: random.Random, prefix: str, digits: int) -> str:
    """``prefix`` + ``digits`` random digits, first digit non-zero: 'RP4829103'."""
    return prefix + str(rng.randrange(1, 10)) + _digits(rng, digits - 1)
