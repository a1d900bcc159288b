"""Write elements into a dataset and record, at the same time, what was planted where.

Setting a value and recording it in one call is what keeps the answer key true: a
value cannot be written without its location, or listed without being written.
Text in ISO 2022 character sets is stored as raw, already-encoded bytes (see
:mod:`safepacs.synth.charsets`); everything else goes through pydicom as usual.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag

from safepacs.synth import charsets
from safepacs.synth.answer_key import Planted, retained_by
from safepacs.synth.charsets import Charset
from safepacs.synth.names import Person, name_components

#: Maximum value lengths in characters (PS3.5 Table 6.2-1); PN is per component group.
_MAX_LEN = {
    "SH": 16,
    "LO": 64,
    "ST": 1024,
    "LT": 10240,
    "PN": 64,
    "CS": 16,
    "DS": 16,
    "IS": 12,
    "UI": 64,
    "AS": 4,
    "DA": 8,
    "TM": 14,
    "DT": 26,
}


def _check(tag: int, vr: str, value: object, charset: Charset) -> None:
    """Refuse a value longer than its VR allows: a generated file must be valid.

    Text is measured in encoded bytes, escape sequences included, and a whole PN
    value against 64: stricter than PS3.5's characters per component group, but what
    strict validators (dciodvfy) check.
    """
    limit = _MAX_LEN.get(vr)
    if limit is None or value is None:
        return
    for v in value if isinstance(value, list | tuple) else [value]:
        size = len(charsets.encode(str(v), charset, vr)) if vr in charsets.TEXT_VRS else len(str(v))
        if size > limit:
            raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr} value too long")


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"not a DICOM keyword: {keyword}")
    return tag


class Planter:
    """A dataset (or sequence item) plus the answer-key entries written into it."""

    def __init__(
        self,
        ds: Dataset,
        charset: Charset,
        sink: list[Planted],
        *,
        prefix: str = "",
        chain: tuple[int, ...] = (),
    ) -> None:
        self.ds = ds
        self.charset = charset
        self.sink = sink
        self.prefix = prefix
        self.chain = chain

    # --- writing ----------------------------------------------------------------

    def _write(self, tag: int, vr: str, value: object) -> None:
        """Set an element; ISO 2022 text goes in pre-encoded, as a modality wrote it."""
        _check(tag, vr, value, self.charset)
        is_text = vr in charsets.TEXT_VRS
        if is_text and self.charset.iso2022:
            values = list(value) if isinstance(value, list | tuple) else [value]
            strs = [str(v) for v in values]
            if not all(s.isascii() for s in strs):
                raw = b"\\".join(charsets.encode(s, self.charset, vr) for s in strs)
                raw = charsets.pad(raw)
                self.ds[tag] = RawDataElement(Tag(tag), vr, len(raw), raw, 0, False, True)
                return
        if is_text and not self.charset.iso2022:
            for s in value if isinstance(value, list | tuple) else [value]:
                charsets.encode(str(s), self.charset, vr)  # fail early, never "?" in a file
        if isinstance(value, tuple):
            value = list(value)
        self.ds.add_new(tag, vr, value)

    def plain(self, keyword: str, value: object) -> None:
        """An element that identifies nobody (modality, pixel spacing, code meanings)."""
        tag = _tag(keyword)
        self._write(tag, dictionary_VR(tag), value)

    def _record(
        self, location: str, tag: int, kind: str, value: str, exact: bool, chain: tuple[int, ...]
    ) -> None:
        self.sink.append(
            Planted(
                file="",
                location=self.prefix + location,
                tag=f"{tag:08X}",
                kind=kind,
                value=value,
                retained_by=retained_by(chain),
                exact=exact,
            )
        )

    def plant(self, keyword: str, value: str | Sequence[str], kind: str) -> None:
        """An identifying element: each of its values is listed at this location."""
        tag = _tag(keyword)
        vr = dictionary_VR(tag)
        self._write(tag, vr, value)
        values = [value] if isinstance(value, str) else list(value)
        for v in values:
            self._record(keyword, tag, kind, str(v), True, self.chain + (tag,))

    def plant_each(self, keyword: str, values: Sequence[tuple[str, str]]) -> None:
        """A multi-valued element whose values are of different kinds: [(value, kind)]."""
        tag = _tag(keyword)
        self._write(tag, dictionary_VR(tag), [v for v, _ in values])
        for v, kind in values:
            self._record(keyword, tag, kind, v, True, self.chain + (tag,))

    def unlisted(self, keyword: str, value: str) -> None:
        """Written but too short to list (PatientSex 'M'): substring search can't use it."""
        self.plain(keyword, value)

    def name(self, keyword: str, people: Person | Sequence[Person]) -> None:
        """A PN element: the whole value and each long-enough component are listed."""
        tag = _tag(keyword)
        many = [people] if isinstance(people, Person) else list(people)
        pns = [p.pn for p in many]
        self._write(tag, "PN", pns[0] if len(pns) == 1 else pns)
        for pn in pns:
            self._record(keyword, tag, "name", pn, True, self.chain + (tag,))
            for comp in name_components(pn):
                self._record(keyword, tag, "name", comp, False, self.chain + (tag,))

    def text(self, keyword: str, text: str, embedded: Sequence[str] = ()) -> None:
        """A description or comment; the identifying pieces inside it are listed."""
        tag = _tag(keyword)
        self._write(tag, dictionary_VR(tag), text)
        for piece in embedded:
            if piece not in text:
                raise AssertionError(f"{keyword}: embedded value missing from text")
            self._record(keyword, tag, "free_text", piece, piece == text, self.chain + (tag,))

    def sequence(self, keyword: str, items: int = 1) -> list[Planter]:
        """Create a sequence of ``items`` empty items and return a planter for each."""
        tag = _tag(keyword)
        datasets = [Dataset() for _ in range(items)]
        self.ds.add_new(tag, "SQ", DicomSequence(datasets))
        return [
            Planter(
                item,
                self.charset,
                self.sink,
                prefix=f"{self.prefix}{keyword}[{i}].",
                chain=self.chain + (tag,),
            )
            for i, item in enumerate(datasets)
        ]

    # --- private elements ---------------------------------------------------------

    def private_creator(self, group: int, creator: str, block: int = 0x10) -> None:
        """Reserve ``block`` of ``group`` for ``creator`` (PS3.5 7.8.1)."""
        self._write((group << 16) | block, "LO", creator)

    def private(
        self,
        group: int,
        element: int,
        vr: str,
        value: str | bytes,
        planted: Sequence[str] = (),
        whole: bool = False,
    ) -> None:
        """A private element; ``planted`` are the identifying substrings it holds.

        ``value`` as bytes is written verbatim (a vendor blob); as text it is encoded
        in the file's character set, also for VR UN, since that is what the vendor's
        own software wrote before the VR was lost.
        """
        tag = (group << 16) | element
        if isinstance(value, str) and vr == "UN":
            raw = charsets.pad(charsets.encode(value, self.charset, "LT"))
            self.ds.add_new(tag, "UN", raw)
        elif isinstance(value, bytes):
            self.ds.add_new(tag, vr, value if len(value) % 2 == 0 else value + b"\x00")
        else:
            self._write(tag, vr, value)
        location = f"({group:04X},{element:04X})"
        for piece in planted:
            self._record(
                location, tag, "private", piece, whole and piece == value, self.chain + (tag,)
            )
