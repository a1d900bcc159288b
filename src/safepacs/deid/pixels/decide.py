"""Is the text OCR read in one box identity?  Rules, in order, each with a name.

1. ``keep:laterality`` / ``keep:position``: the best reading is only clinical markers
   (L, R, PA, 左, 卧位, SUPINE...): kept, even when the site removes all other text.
2. ``header:<Keyword>``: the text holds an identifying value of the file's own header,
   fuzzily (OCR errors, any name order, any separators, every written date form).
3. ``pattern:*`` / ``label:*``: the text looks like identity whatever the header says:
   resident ID numbers, dates, long numbers and MRN-like codes, phone numbers, e-mail
   addresses, institution words, a Chinese surname + given name, or a label such as
   "Name:", "DOB", "姓名", "住院号" followed by a value.
4. ``remove-all-text``: the site chose to remove every text that is not a marker.
5. ``unreadable-text``: OCR could not read it, but it is a line of several glyphs in the
   border band where devices print identity: removed (fail closed).  A single glyph or a
   short blob is kept (``keep:unreadable``): a lost laterality marker is a clinical risk.
6. ``keep:no-identity``: readable text that matched nothing ("kVp 120", "red green blue").

Every reading of a box is tried (Tesseract may give several); one hit removes the box.
Vocabularies live in ``data/vocabulary.json``.  Texts are PHI: no rule name carries one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from pydicom import Dataset

from safepacs.deid.identifiers import (
    identifying_forms,
    is_cjk,
    iter_values,
    needles_for,
)

#: Kinds of header value searched for in pixels (UIDs are never burned in).
HEADER_KINDS = frozenset(
    {"name", "id", "date", "birth_date", "address", "phone", "email", "institution",
     "device", "other_text", "patient_characteristic"}
)
#: Mean OCR confidence below which a reading counts as unreadable; chi_sim reports
#: lower confidences on clean ideographs, so readings holding any get a lower bar.
READABLE_CONFIDENCE = 50.0
READABLE_CONFIDENCE_CJK = 30.0
#: Fraction of the frame's height/width, from each edge, where devices print identity.
BORDER_BAND = 0.25


@dataclass(frozen=True)
class Decision:
    remove: bool
    rule: str


@dataclass(frozen=True)
class BoxShape:
    """What the decision needs to know of a box besides its text."""

    glyph_sized: bool  # about as wide as tall: one or two glyphs
    blobs: int  # ink blobs OCR saw
    aspect: float  # width / height
    in_border: bool  # inside the border band of the frame


# --------------------------------------------------------------------------- vocabulary
@dataclass(frozen=True)
class _Vocabulary:
    laterality: frozenset[str]
    position: frozenset[str]
    labels: tuple[tuple[str, re.Pattern[str]], ...]
    institution: re.Pattern[str]
    surnames: frozenset[str]  # one character each
    compound_surnames: frozenset[str]  # two characters each

    def begins_with_surname(self, ideographs: str) -> bool:
        return ideographs[:1] in self.surnames or ideographs[:2] in self.compound_surnames


def _alternation(words: Iterable[str]) -> str:
    """Longest first; ASCII words must stand alone, CJK words may touch anything."""
    out = []
    for w in sorted(set(words), key=len, reverse=True):
        esc = re.escape(w).replace(r"\ ", r"\s*")
        out.append(f"(?<![a-z0-9]){esc}(?![a-z])" if w.isascii() else esc)
    return "|".join(out)


@lru_cache(maxsize=1)
def vocabulary() -> _Vocabulary:
    raw = json.loads(
        resources.files("safepacs.deid.pixels").joinpath("data/vocabulary.json").read_text("utf-8")
    )
    value = r"\s*[:：.#]?\s*[\w\u3400-\u9fff]"
    labels = tuple(
        (rule, re.compile(f"(?:{_alternation(w.casefold() for w in raw[key])}){value}"))
        for rule, key in (
            ("label:name", "name_labels"),
            ("label:dob", "birth_labels"),
            ("label:id", "id_labels"),
            ("label:demographic", "demographic_labels"),
        )
    )
    return _Vocabulary(
        laterality=frozenset(w.casefold() for w in raw["markers"]["laterality"]),
        position=frozenset(w.casefold() for w in raw["markers"]["position"]),
        labels=labels,
        institution=re.compile(_alternation(w.casefold() for w in raw["institution_words"])),
        surnames=frozenset(raw["cjk_surnames"]),
        compound_surnames=frozenset(raw["cjk_compound_surnames"]),
    )


# --------------------------------------------------------------------------- normalising
_CONFUSABLE = str.maketrans({"o": "0", "q": "0", "i": "1", "l": "1", "|": "1", "!": "1",
                             "s": "5", "z": "2", "b": "8"})


def clean(text: str) -> str:
    """NFKC (full-width forms to ASCII), case-folded, accents dropped, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", text).strip()


def fold(text: str) -> str:
    """The comparison key: letters, digits and ideographs only, OCR look-alikes merged
    (o/0, i/l/1, s/5, z/2, b/8), so "Lindqvist" and "L1ndqv15t" share a key."""
    text = clean(text).replace("|", "l")
    return "".join(c for c in text if c.isalnum()).translate(_CONFUSABLE)


def _digitised(text: str) -> str:
    """Tokens that are mostly digits with look-alike letters read as digits, and digit
    groups split by OCR (a space, a dash) joined: '3201021967 02148780' -> one number."""
    out = []
    for tok in text.split(" "):
        digits = sum(c.isdigit() for c in tok)
        if digits and digits * 2 >= sum(c.isalnum() for c in tok):
            tok = tok.translate(_CONFUSABLE)
        out.append(tok)
    return " ".join(out)


def _errors_allowed(key: str) -> int:
    """Edits a needle tolerates: none for short Latin values, one per ~5 characters
    above; one for any ideographic name (chi_sim misreads one character in three often
    enough, and a two-character name then matches on its surname or given name)."""
    n = len(key)
    if any(is_cjk(c) for c in key):
        return 1
    return 0 if n < 4 else 1 if n < 8 else 2 if n < 13 else 3


def within(needle: str, hay: str, k: int) -> bool:
    """Whether ``needle`` occurs in ``hay`` with at most ``k`` edits (Sellers' algorithm)."""
    if needle in hay:
        return True
    m = len(needle)
    if k == 0 or len(hay) < m - k:
        return False
    prev = list(range(m + 1))
    for ch in hay:
        cur = [0]
        for j in range(1, m + 1):
            cost = prev[j - 1] + (needle[j - 1] != ch)
            cur.append(min(cost, prev[j] + 1, cur[j - 1] + 1))
        if cur[m] <= k:
            return True
        prev = cur
    return False


# --------------------------------------------------------------------------- header
@dataclass(frozen=True)
class HeaderNeedles:
    """Folded forms of a header's identifying values, with the attribute they came from.

    Dates are matched exactly (every written form is listed; the date patterns catch the
    rest), everything else with a few OCR errors allowed.
    """

    fuzzy: tuple[tuple[str, int, str], ...] = ()  # (key, errors allowed, keyword)
    exact: tuple[tuple[str, str], ...] = ()  # (key, keyword)

    def match(self, text: str, *, fuzzy: bool = True) -> str | None:
        """The keyword of the first header value found in ``text``, or None.

        ``fuzzy=False`` allows exact (folded) matches only, for readings so poor that a
        few edits would let noise match a Latin name; ideographic values stay fuzzy (OCR
        confidence of chi_sim is low even on clean names, and noise seldom hits three
        of four given characters in order).
        """
        hay = fold(text)
        if not hay:
            return None
        for key, keyword in self.exact:
            if key in hay:
                return keyword
        for key, k, keyword in self.fuzzy:
            if within(key, hay, k if fuzzy or is_cjk(key[0]) else 0):
                return keyword
        return None


def _significant_key(key: str) -> bool:
    if any(is_cjk(c) for c in key):
        return len(key) >= 2
    return len(key) >= 3 and not key.isdigit() or len(key) >= 4


def header_needles(header: Dataset) -> HeaderNeedles:
    """Needles for every identifying value of ``header`` (any depth, file meta included)."""
    fuzzy: dict[str, tuple[int, str]] = {}
    exact: dict[str, str] = {}
    for value in iter_values(header):
        if value.kind not in HEADER_KINDS:
            continue
        keyword = value.keyword or "private"
        for kind, form in identifying_forms(value):
            for needle in needles_for(kind, form):
                key = fold(needle.text)
                if not _significant_key(key):
                    continue
                if kind in ("date", "birth_date"):
                    exact.setdefault(key, keyword)
                else:
                    fuzzy.setdefault(key, (_errors_allowed(key), keyword))
    return HeaderNeedles(
        fuzzy=tuple(sorted(((k, e, kw) for k, (e, kw) in fuzzy.items()), key=lambda t: -len(t[0]))),
        exact=tuple(sorted(exact.items(), key=lambda t: -len(t[0]))),
    )


# --------------------------------------------------------------------------- patterns
_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = re.compile(
    r"(?<!\d)(?:"
    r"(?:19|20)\d{2}\s?[-./年]\s?\d{1,2}\s?[-./月]\s?\d{1,2}"  # 2012-01-09, 2012年1月9日
    r"|(?:19|20)\d{2}[^\d\s]\s?(?:0?[1-9]|1[0-2])[^\d\s]\s?(?:0?[1-9]|[12]\d|3[01])(?!\d)"  # 年/月 misread
    r"|\w{2,4}\s?年\s?\d{1,2}\s?月"  # 2019年3月, a digit of the year misread
    r"|\d{1,2}\s?[-./]\s?\d{1,2}\s?[-./]\s?(?:19|20)?\d{2}"  # 01.09.2012, 9/1/12
    r"|(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"  # 20120109
    r")(?!\d)"
    rf"|\d{{1,2}}[ -]?{_MONTHS}[ -,]*\d{{2,4}}|{_MONTHS} \d{{1,2}},? \d{{4}}"
)
_TIME = re.compile(r"(?<!\d)(?:[01]?\d|2[0-3])[:：][0-5]\d(?:[:：][0-5]\d)?(?!\d)")
_RESIDENT_ID = re.compile(r"(?<!\d)\d{17}[\dx](?![\dx])")
_MOBILE = re.compile(r"(?<!\d)(?:\+?86)?1[3-9]\d{9}(?!\d)|\+\d{8,}")
_LONG_NUMBER = re.compile(r"\d{6,}")
_CODE = re.compile(r"(?<![a-z0-9])(?:[a-z]{1,5}-?\d{4,}|\d{4,}-?[a-z]{1,3})(?![a-z0-9])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
_JOIN_DIGITS = re.compile(r"(?<=\d)[\s-](?=\d)")


def pattern_rule(text: str) -> str | None:
    """The pattern rule ``text`` matches, or None.  Works on one OCR reading."""
    vocab = vocabulary()
    plain = clean(text)
    if not plain:
        return None
    digits = _digitised(plain)
    compact = _JOIN_DIGITS.sub("", digits)
    if _RESIDENT_ID.search(compact):
        return "pattern:resident-id"
    if _EMAIL.search(plain):
        return "pattern:email"
    if _DATE.search(digits) or _DATE.search(compact):
        return "pattern:date"
    if _MOBILE.search(compact):
        return "pattern:phone"
    if _LONG_NUMBER.search(compact):
        return "pattern:long-number"
    if _CODE.search(digits):
        return "pattern:mrn"
    for rule, label in vocab.labels:
        if label.search(plain):
            return rule
    if vocab.institution.search(plain):
        return "pattern:institution"
    if _TIME.search(digits):
        return "pattern:time"
    ideographs = "".join(c for c in plain if c.isalnum())
    if (
        2 <= len(ideographs) <= 4
        and all(is_cjk(c) for c in ideographs)
        and vocab.begins_with_surname(ideographs)
        and marker_kind(text) is None
    ):
        return "pattern:cjk-name"
    return None


def marker_kind(text: str) -> str | None:
    """'laterality' or 'position' when every word of ``text`` is a clinical marker."""
    vocab = vocabulary()
    words = [w.strip(".:,;()[]") for w in re.split(r"[\s,;/]+", clean(text))]
    words = [w for w in words if w]
    if not words or not all(w in vocab.laterality or w in vocab.position for w in words):
        return None
    return "laterality" if any(w in vocab.laterality for w in words) else "position"


def identity_rule(text: str, needles: HeaderNeedles, confidence: float = 100.0) -> str | None:
    """Why ``text`` identifies (a rule name), or None: header values first, then patterns.

    A reading below :data:`READABLE_CONFIDENCE` is mostly noise: it is searched for
    exact header values and the structured patterns (numbers, dates), not fuzzily and
    not for labels or words.
    """
    sure = _sure(text, confidence)
    keyword = needles.match(text, fuzzy=sure)
    if keyword:
        return f"header:{keyword}"
    rule = pattern_rule(text)
    if rule and (sure or rule in _STRUCTURED):
        return rule
    return None


_STRUCTURED = frozenset(
    {"pattern:resident-id", "pattern:date", "pattern:phone", "pattern:long-number",
     "pattern:email"}
)


def needs_second_look(rule: str, text: str, confidence: float) -> bool:
    """Whether ``rule``, found in one reading, needs a second look to be a leak.

    A header value never does.  A rule on the words alone (a short Chinese name, a label,
    an institution word) always does, and so does a number pattern read unsurely (the
    dithering of a palette photo read "XX2EX2332323203XX" at 0%): that is what OCR noise
    makes.  :func:`safepacs.deid.pixels.findings.legible_identity` looks again before
    calling either a leak.  De-identification never waits for that: it removes.
    """
    if rule.startswith("header:"):
        return False
    return rule not in _STRUCTURED or not _sure(text, confidence)


def same_reading(a: str, b: str) -> bool:
    """Whether two readings of one box say the same: folded, the shorter lies in the
    longer with at most a quarter of its characters wrong (a margin adds a stray mark)."""
    short, long = sorted((fold(a), fold(b)), key=len)
    return bool(short) and within(short, long, len(short) // 4)


def _sure(text: str, confidence: float) -> bool:
    bar = READABLE_CONFIDENCE_CJK if any(is_cjk(c) for c in text) else READABLE_CONFIDENCE
    return confidence >= bar


def _readable(readings: Sequence[tuple[str, float]]) -> bool:
    return any(sum(c.isalnum() for c in t) >= 2 and _sure(t, conf) for t, conf in readings)


def decide(
    readings: Sequence[tuple[str, float]],
    shape: BoxShape,
    needles: HeaderNeedles,
    *,
    remove_all_text: bool = False,
) -> Decision:
    """Remove or keep one box, given every OCR reading of it: (text, confidence), best first."""
    if readings and readings[0][1] >= READABLE_CONFIDENCE:
        kind = marker_kind(readings[0][0])
        if kind:  # only marker words: nothing in it can identify (a name sharing 立 with 立位)
            return Decision(False, f"keep:{kind}")
    for text, conf in readings:
        rule = identity_rule(text, needles, conf)
        if rule:
            return Decision(True, rule)
    readable = _readable(readings)
    if remove_all_text and (readable or not shape.glyph_sized):
        return Decision(True, "remove-all-text")
    if readable:
        return Decision(False, "keep:no-identity")
    if not shape.glyph_sized and shape.blobs >= 4 and shape.aspect >= 4 and shape.in_border:
        return Decision(True, "unreadable-text")
    return Decision(False, "keep:unreadable")
