"""Free-text cleaning: remove this file's identifiers and PHI-shaped patterns from prose.

Clean Descriptors and Clean Structured Content (PS3.15 E.3) keep descriptions and report
text but must take the patient out of them.  Two sources of PHI are searched in one pass:

* the file's own identifying values (:class:`~safepacs.deid.identifiers.Identifiers`):
  names in any order, case and separator ("ZHANG^WEI" finds "Wei Zhang", "zhang, wei",
  "张伟"), IDs, dates in their common written forms;
* patterns that are PHI whatever file they are in: PRC resident ID numbers with a valid
  check digit, telephone numbers, e-mail addresses.

All needles of one :class:`Identifiers` compile into a single regular expression shaped as
a trie (shared prefixes merged), so the text is scanned once however many values there
are, and the compiled pattern is cached per ``Identifiers``.  Pure: no files, no logging.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from functools import lru_cache

from safepacs.deid.identifiers import Identifiers, Needle, normalize

# ------------------------------------------------------------------------- resident IDs
_RID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RID_CHECK = "10X98765432"
#: First two digits of PRC administrative division codes (provinces, HK/MO/TW).
_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
    "61 62 63 64 65 71 81 82 83 91".split()
)


def _plausible_birth(yyyymmdd: str) -> bool:
    try:
        day = _dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return 1880 <= day.year <= 2100


def resident_id_check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of the first 17 digits of a resident ID."""
    total = sum(int(c) * w for c, w in zip(first17, _RID_WEIGHTS, strict=True))
    return _RID_CHECK[total % 11]


def is_valid_resident_id(s: str) -> bool:
    """Whether ``s`` is an 18-character PRC resident identity number (GB 11643-1999).

    17 digits, a MOD 11-2 check character (0-9 or X), and a real birth date in positions
    7-14: the checksum is what separates an ID from any other 18-digit number.
    """
    s = s.strip()
    if len(s) != 18 or not s.isascii() or not s[:17].isdigit():
        return False
    if s[17].upper() != resident_id_check_digit(s[:17]):
        return False
    return _plausible_birth(s[6:14])


def _is_legacy_resident_id(s: str) -> bool:
    """15-digit IDs (before 1999): province code plus a real 19YYMMDD birth date."""
    return (
        len(s) == 15 and s.isascii() and s.isdigit() and s[:2] in _PROVINCES
        and _plausible_birth("19" + s[6:12])
    )


# ------------------------------------------------------------------------------ patterns
_EMAIL = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
_RID18 = r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9A-Za-z])"
_RID15 = r"(?<![0-9])[1-8][0-9]{14}(?![0-9])"
_PHONE = "|".join(
    [
        # Chinese mobile: 13812345678, 138-1234-5678, +86 138 1234 5678, 0086-138...
        r"(?<![0-9+])(?:(?:\+|00)86[\s\-]?)?1[3-9][0-9](?:[\s\-]?[0-9]{4}){2}(?![0-9])",
        # Chinese landline: 010-12345678, (0755)1234567, +86 10 12345678
        r"(?<![0-9+])(?:(?:\+|00)86[\s\-]?0?[1-9][0-9]{1,2}[\s\-]?|\(0[1-9][0-9]{1,2}\)[\s\-]?"
        r"|0[1-9][0-9]{1,2}-)[0-9]{7,8}(?:-[0-9]{1,6})?(?![0-9])",
        # North American: (555) 123-4567, 555-123-4567, +1 555 123 4567
        r"(?<![0-9A-Za-z+])(?:\+?1[\s.\-]?)?(?:\([2-9][0-9]{2}\)\s?|[2-9][0-9]{2}[\s.\-])"
        r"[0-9]{3}[\s.\-][0-9]{4}(?![0-9])",
        # Japanese / Korean dashed: 090-1234-5678, 03-1234-5678, 010-1234-5678 (not dates)
        r"(?<![0-9+\-])(?!(?:0?[1-9]|[12][0-9]|3[01])-(?:0?[1-9]|1[0-2])-(?:19|20)[0-9]{2}(?![0-9]))"
        r"0[1-9][0-9]{0,3}-[0-9]{2,4}-[0-9]{4}(?![0-9\-])",
        # Other international: +44 20 7946 0958, +49 (30) 1234567
        r"(?<![0-9A-Za-z+])\+[1-9][0-9]{0,2}(?:[\s.\-]?\(?[0-9]{1,5}\)?){1,5}(?![0-9])",
    ]
)
#: a calendar date written in prose, in any common form.  Not a pattern of every file: a
#: date is removed from kept text only when the run does not keep dates (see scrub_text)
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_YEAR = r"(?:1[89]|20)[0-9]{2}"
_MM = r"(?:0?[1-9]|1[0-2])"
_DD = r"(?:0?[1-9]|[12][0-9]|3[01])"
_DATE_TEXT = "|".join(
    [
        # 2024-05-06, 2024/5/6, 2024.05.06 (and a time after it stays: it says no day)
        rf"(?<![0-9]){_YEAR}\s?(?P<s1>[-./])\s?{_MM}\s?(?P=s1)\s?{_DD}(?![0-9])",
        # 06.05.2024, 05/16/2024, 6-5-24: day or month first, a 2- or 4-digit year; not
        # inside a version number ("v2.1.12", "1.2.840...")
        rf"(?<![0-9A-Za-z.]){_DD}(?P<s2>[-./]){_DD}(?P=s2)(?:{_YEAR}|[0-9]{{2}})(?![0-9]|\.[0-9])",
        # 20240506, 20240506101112 (DICOM DA and DT)
        rf"(?<![0-9]){_YEAR}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])(?:[0-9]{{2,6}}(?:\.[0-9]{{1,6}})?)?(?![0-9])",
        # 2024年5月6日, 5月6日, 2024年5月, 2024년 5월 6일
        rf"(?<![0-9])(?:{_YEAR}\s?[年년]\s?)?{_MM}\s?[月월]\s?{_DD}\s?[日일号號]?(?![0-9])",
        rf"(?<![0-9]){_YEAR}\s?[年년]\s?{_MM}\s?[月월](?![0-9])",
        # 6 May 2024, 06-MAY-2024, 6th of May, 2024
        rf"(?<![0-9A-Za-z]){_DD}(?:st|nd|rd|th)?(?:\s+of)?[\s\-]{_MONTH}[\s\-,]*(?:{_YEAR}|'?[0-9]{{2}})(?![0-9])",
        # May 6, 2024; May 6th 2024; May 2024
        rf"(?<![A-Za-z]){_MONTH}\s{_DD}(?:st|nd|rd|th)?,?\s{_YEAR}(?![0-9])",
        rf"(?<![A-Za-z]){_MONTH}\s{_YEAR}(?![0-9])",
    ]
)
_PATTERNS = (
    ("email", _EMAIL),
    ("resident_id", _RID18),
    ("resident_id_15", _RID15),
    ("phone", _PHONE),
)


def _accept_pattern(kind: str, found: str) -> bool:
    if kind == "resident_id":
        return is_valid_resident_id(found)
    if kind == "resident_id_15":
        return _is_legacy_resident_id(found)
    if kind == "phone":
        digits = sum(c.isdigit() for c in found)
        return 7 <= digits <= 15
    return True


def _pattern_kind(group: str) -> str:
    return "resident_id" if group.startswith("resident_id") else group


def find_patterns(text: str) -> list[tuple[str, tuple[int, int]]]:
    """PHI-shaped spans in ``text``: (kind, (start, end)) with kind "resident_id",
    "phone" or "email".  Resident IDs count only with a valid check digit."""
    return [(_pattern_kind(group), m.span()) for group, m in _pattern_scanner().scan(text)]


@lru_cache(maxsize=1)
def _pattern_scanner() -> _Scanner:
    return _Scanner(list(_PATTERNS))


# ------------------------------------------------------------------------ needle regexes
#: What may stand between the parts of a name: nothing, spaces, ^ , . _ - · 、
SEPARATOR_RX = r"[\s,^._\-·、，\u3000]*"
_WORD_RANGES = "0-9A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_NOT_WORD_AFTER = f"(?![{_WORD_RANGES}])"
_NOT_WORD_AFTER_BYTES = rb"(?![0-9A-Za-z])"
_SEP = object()  # trie token: any separators
_SPACE = object()  # trie token: a run of whitespace inside one part
_END = None


def is_word_char(ch: str) -> bool:
    """Letters and digits of Latin scripts: where a value must not run into its neighbour.

    CJK is excluded on purpose: Chinese prose has no spaces, "患者张伟男" contains "张伟".
    """
    o = ord(ch)
    return (ch.isascii() and ch.isalnum()) or (0xC0 <= o <= 0x24F and o not in (0xD7, 0xF7))


def is_bounded(key: str) -> bool:
    """Whether a needle must stand alone (not inside a longer word or number).

    Numbers and UIDs always, short words too ("WANG" is not in "SWANGANZ"); a long value
    is specific enough to count wherever it appears.
    """
    return len(key) < 10 or all(c.isdigit() for c in key)


def _needle_tokens(needle: Needle) -> list[Hashable]:
    tokens: list[Hashable] = []
    for i, part in enumerate(needle.parts):
        if i:
            tokens.append(_SEP)
        for j, word in enumerate(part.split()):
            if j:
                tokens.append(_SPACE)
            tokens.extend(c.lower() if len(c.lower()) == 1 else c for c in word)
    return tokens


def _trie_insert(root: dict, tokens: Sequence[Hashable], end: str | bytes) -> None:
    node = root
    for tok in tokens:
        node = node.setdefault(tok, {})
    # Same path, different boundary rules: the looser one, so nothing is missed.
    if _END not in node or len(end) < len(node[_END]):
        node[_END] = end


def _trie_emit(
    node: dict, emit: Callable[[Hashable], str | bytes], lit: Callable[[str], str | bytes]
) -> str | bytes:
    """Regex for a trie: chains become literals, branches alternations, ends last."""
    out = []
    while True:
        keys = [k for k in node if k is not _END]
        if len(keys) != 1 or _END in node:
            break
        out.append(emit(keys[0]))
        node = node[keys[0]]
    keys.sort(key=lambda k: (k is _SEP or k is _SPACE, str(k)))
    alts = [emit(k) + _trie_emit(node[k], emit, lit) for k in keys]
    if _END in node:
        alts.append(node[_END])
    empty = lit("")
    if not alts:
        tail = empty
    elif len(alts) == 1:
        tail = alts[0]
    else:
        tail = lit("(?:") + lit("|").join(alts) + lit(")")
    return empty.join(out) + tail


def _emit_str(tok: Hashable) -> str:
    if tok is _SEP:
        return SEPARATOR_RX
    if tok is _SPACE:
        return r"\s+"
    return re.escape(tok)  # type: ignore[arg-type]


def needle_regex(needles: Iterable[Needle]) -> str | None:
    """One regex (to compile with IGNORECASE) matching any needle, longest match first.

    Short and numeric needles get a right-hand word boundary in the pattern; the left-hand
    one is checked by :func:`iter_needle_matches` (a look-behind would defeat the
    first-character prefilter that keeps thousands of alternatives fast).
    """
    root: dict = {}
    for needle in needles:
        tokens = _needle_tokens(needle)
        if not tokens:
            continue
        last = needle.parts[-1][-1:]
        bounded = is_bounded(needle.key) and bool(last) and is_word_char(last)
        _trie_insert(root, tokens, _NOT_WORD_AFTER if bounded else "")
    if not root:
        return None
    return _trie_emit(root, _emit_str, lambda s: s)  # type: ignore[return-value]


def _emit_bytes(tok: Hashable) -> bytes:
    return re.escape(bytes([tok]))  # type: ignore[list-item]


def bytes_literal_regex(literals: Iterable[tuple[bytes, bool]]) -> bytes | None:
    """One bytes regex for encoded needles: ``(literal, right_bounded)`` pairs.

    ASCII literals match case-insensitively; others exactly (case folding bytes would
    corrupt multi-byte characters such as GB18030 trail bytes).
    """
    ascii_root: dict = {}
    other_root: dict = {}
    for literal, bounded in literals:
        if not literal:
            continue
        end = _NOT_WORD_AFTER_BYTES if bounded else b""
        if literal.isascii() and b"\x1b" not in literal:  # ISO 2022 runs are case-exact
            _trie_insert(ascii_root, literal.lower(), end)
        else:
            _trie_insert(other_root, literal, end)
    alts = []
    if ascii_root:
        alts.append(b"(?i:" + _trie_emit(ascii_root, _emit_bytes, str.encode) + b")")
    if other_root:
        alts.append(_trie_emit(other_root, _emit_bytes, str.encode))
    return b"|".join(alts) if alts else None  # type: ignore[arg-type]


def _needle_left_ok(text: str, m: re.Match[str]) -> bool:
    start = m.start()
    if start == 0 or not is_word_char(text[start]) or not is_word_char(text[start - 1]):
        return True
    return not is_bounded(normalize(m.group()))


class _Scanner:
    """A regex of named alternatives whose matches are validated after matching.

    A rejected match (bad check digit, a word running into a short needle) is not the end
    of that position: the other alternatives are tried there, then the next character.
    """

    def __init__(self, alternatives: list[tuple[str, str]], flags: int = 0) -> None:
        self._alternatives = alternatives
        self._flags = flags
        self.pattern = re.compile(
            "|".join(f"(?P<{name}>{rx})" for name, rx in alternatives), flags
        )
        self._singles: list[tuple[str, re.Pattern[str]]] | None = None

    def _single(self) -> list[tuple[str, re.Pattern[str]]]:
        if self._singles is None:
            self._singles = [(n, re.compile(rx, self._flags)) for n, rx in self._alternatives]
        return self._singles

    def scan(self, text: str) -> Iterator[tuple[str, re.Match[str]]]:
        pos, n = 0, len(text)
        while pos <= n:
            m = self.pattern.search(text, pos)
            if m is None:
                return
            group = m.lastgroup or ""
            found: tuple[str, re.Match[str]] | None = (group, m)
            if m.end() == m.start() or not _accepted(group, text, m):
                found = self._fallback(text, m.start(), group)
            if found is None:
                pos = m.start() + 1
                continue
            yield found
            pos = found[1].end()

    def _fallback(self, text: str, at: int, rejected: str) -> tuple[str, re.Match[str]] | None:
        for name, single in self._single():
            if name == rejected:
                continue
            m = single.match(text, at)
            if m is not None and m.end() > m.start() and _accepted(name, text, m):
                return name, m
        return None


def _accepted(group: str, text: str, m: re.Match[str]) -> bool:
    if group == "needle":
        return _needle_left_ok(text, m)
    return _accept_pattern(group, m.group())


def iter_needle_matches(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """Non-overlapping matches of a compiled :func:`needle_regex` that also respect the
    left-hand word boundary (a rejected match is retried one character later)."""
    pos, n = 0, len(text)
    while pos <= n:
        m = pattern.search(text, pos)
        if m is None:
            return
        if m.end() == m.start() or not _needle_left_ok(text, m):
            pos = m.start() + 1
            continue
        yield m
        pos = m.end()


# ------------------------------------------------------------------------------ scrubbing
@lru_cache(maxsize=256)
def _scrub_scanner(ids: Identifiers, dates: bool = False) -> _Scanner:
    """Email first (it holds names), resident IDs, this file's values, phones, dates."""
    needles = needle_regex(ids.needles())
    alternatives = list(_PATTERNS[:3])
    if needles:
        alternatives.append(("needle", needles))
    alternatives.append(("phone", _PHONE))
    if dates:
        alternatives.append(("date", _DATE_TEXT))
    return _Scanner(alternatives, re.IGNORECASE)


def scrub_text(text: str, ids: Identifiers, *, replacement: str = "***", dates: bool = False) -> str:
    """``text`` with every identifier of the file and every PHI-shaped pattern replaced.

    The Clean Descriptors / Clean Structured Content cleaner: clinical words stay, the
    person goes.  Each name, ID, date of the header, phone, e-mail or resident ID becomes
    one ``replacement``; with ``dates`` (a run that does not keep dates as they are), so
    does every calendar date the text spells ("prior 6 May 2024", "2024年5月6日"): an exam
    date the header does not hold dates the patient as well as the header's own.
    """
    if not text:
        return text
    out, last = [], 0
    for _, m in _scrub_scanner(ids, dates).scan(text):
        out.append(text[last : m.start()])
        out.append(replacement)
        last = m.end()
    if out:
        out.append(text[last:])
        text = "".join(out)
    return scrub_labelled_names(text, replacement)


# A name that the header does not know still gives itself away by its label:
# "Next of kin Zhao Yulan", "Contact: 赵玉兰", "姓名：王芳", "Dr. Smith".
_LABEL = (
    r"(?:next\s+of\s+kin|nok|contact(?:\s+person)?|relative|mother|father|wife|husband|"
    r"spouse|son|daughter|guardian|emergency\s+contact|patient(?:'s)?\s+name|name|"
    r"referred\s+by|physician|doctor|dr\.?|nurse|technologist|radiographer|"
    r"姓名|患者|病人|家属|联系人|紧急联系人|母亲|父亲|配偶|监护人|医生|医师|技师|护士|"
    r"氏名|患者名|이름|환자|보호자)"
)
_NAME_AFTER_LABEL = re.compile(
    _LABEL
    + r"(?P<sep>\s*[:：=]?\s*(?:(?:dr|prof|mr|mrs|ms|miss)\.?\s+)?)"
    + r"(?P<name>[\u3400-\u9fff\uac00-\ud7af\u3040-\u30ff]{2,4}"
    + r"|[A-Z][A-Za-z'\-]+(?:[ ^,]+[A-Z][A-Za-z'\-]+){0,2})",
    re.IGNORECASE,
)


def scrub_labelled_names(text: str, replacement: str = "***") -> str:
    """Replace a name that follows a person label, whether or not the header knows it.

    Fail closed: a clinical word that happens to follow such a label is lost, a name is not
    kept.  Latin names must start with a capital letter to count.
    """

    def sub(m: re.Match[str]) -> str:
        name = m.group("name")
        prefix = m.group(0)[: m.start("name") - m.start()]
        if not name.isascii():
            return prefix + replacement
        # Latin: only the leading capitalised words are the name ("Smith for cough")
        words = re.split(r"([ ^,]+)", name)
        end = 0
        for i in range(0, len(words), 2):
            if not words[i][:1].isupper():
                break
            end = i + 1
        if end == 0:
            return m.group(0)
        return prefix + replacement + "".join(words[end:])

    return _NAME_AFTER_LABEL.sub(sub, text)
