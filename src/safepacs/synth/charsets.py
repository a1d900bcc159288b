"""The character sets the corpus writes, with a standard-conformant ISO 2022 codec.

Why our own codec: pydicom 3.0.x writes ISO 2022 IR 58 (GB2312) text without the
``ESC $ ) A`` designation that PS3.5 requires and leaves the escape bytes in the
strings it decodes; it also writes multi-line ISO 2022 IR 149 text with a single
designation although CR/LF resets it.  The corpus must hold bytes as a conformant
modality writes them (PS3.5 Annex H, I and K examples), so text in the ISO 2022
character sets is encoded here and stored as raw element bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ESC = "\x1b"

#: Characters that end a code-extension run (PS3.5 6.1.2.5.3): CR, LF, TAB, FF.
TEXT_DELIMITERS = "\r\n\t\f"
#: Person-name and multi-value delimiters also reset to the default repertoire.
PN_DELIMITERS = TEXT_DELIMITERS + "^=\\"
#: VRs whose value is encoded with Specific Character Set.
TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "PN", "UC"})
#: Text VRs in which backslash separates values (and so resets the repertoire).
MULTI_VALUE_VRS = frozenset({"SH", "LO", "PN", "UC"})


@dataclass(frozen=True)
class Charset:
    """One Specific Character Set as written in (0008,0005), with how to encode it."""

    label: str  #: the name used in the answer key
    specific_character_set: tuple[str, ...]  #: (0008,0005) values; () means absent
    codec: str  #: Python codec for the text (G1 or G0 set for ISO 2022)
    escape: str = ""  #: ISO 2022 designation escape sequence, "" for stand-alone sets
    g0: bool = False  #: designation into G0 (Japanese): must switch back to ASCII

    @property
    def iso2022(self) -> bool:
        return bool(self.escape)

    def can_encode(self, text: str, vr: str = "LO") -> bool:
        """True if ``text`` can be written in a ``vr`` element in this character set."""
        try:
            encode(text, self, vr)
        except UnicodeEncodeError:
            return False
        return True


ASCII = Charset("ISO_IR 6", (), "ascii")
LATIN1 = Charset("ISO_IR 100", ("ISO_IR 100",), "latin_1")
UTF8 = Charset("ISO_IR 192", ("ISO_IR 192",), "utf-8")
GB18030 = Charset("GB18030", ("GB18030",), "gb18030")
IR58 = Charset("ISO 2022 IR 58", ("", "ISO 2022 IR 58"), "gb2312", ESC + "$)A")
IR87 = Charset("ISO 2022 IR 87", ("", "ISO 2022 IR 87"), "iso2022_jp", ESC + "$B", g0=True)
IR149 = Charset("ISO 2022 IR 149", ("", "ISO 2022 IR 149"), "euc_kr", ESC + "$)C")

CHARSETS: dict[str, Charset] = {
    c.label: c for c in (ASCII, LATIN1, UTF8, GB18030, IR58, IR87, IR149)
}

_ALLOWED_ESCAPES = {ESC + "$B", ESC + "(B"}


def _delimiters(vr: str) -> str:
    if vr == "PN":
        return PN_DELIMITERS
    if vr in MULTI_VALUE_VRS:
        return TEXT_DELIMITERS + "\\"
    return TEXT_DELIMITERS


def encode(text: str, charset: Charset, vr: str) -> bytes:
    """Encode one element value (unpadded) as a conformant writer would.

    Raises UnicodeEncodeError when a character is outside the character set, so
    callers can never plant a value the file cannot hold.
    """
    if not charset.iso2022:
        return text.encode(charset.codec)
    out = bytearray()
    for piece in re.split(f"([{re.escape(_delimiters(vr))}])", text):
        if len(piece) == 1 and piece in _delimiters(vr):
            out += piece.encode("ascii")
        elif piece:
            run = _encode_run(piece, charset)
            if vr in MULTI_VALUE_VRS and b"\\" in run:
                # JIS X 0208 pairs are 7-bit: 本 is 0x4B 0x5C.  Readers that split values
                # on that byte see two values, so multi-valued VRs must not contain it.
                raise UnicodeEncodeError(charset.codec, piece, 0, len(piece), "byte 5CH")
            out += run
    return bytes(out)


def _encode_run(segment: str, charset: Charset) -> bytes:
    """Encode text between two delimiters; the designation is lost at each delimiter."""
    if segment.isascii():
        return segment.encode("ascii")
    if charset.g0:
        # iso2022_jp switches G0 with ESC $ B and back with ESC ( B before ASCII and at
        # the end, exactly as PS3.5 H.3.1 shows; refuse any other designation.
        raw = segment.encode(charset.codec)
        if set(re.findall(rb"\x1b[$(][@-Z]", raw)) - {e.encode() for e in _ALLOWED_ESCAPES}:
            raise UnicodeEncodeError(charset.codec, segment, 0, len(segment), "not JIS X 0208")
        return raw
    # G1 sets (IR 58, IR 149): designate once before the first non-ASCII character of
    # the segment (PS3.5 K.2, I.2); ASCII stays in G0 so EUC bytes follow directly.
    first = next(i for i, c in enumerate(segment) if not c.isascii())
    head, tail = segment[:first], segment[first:]
    return head.encode("ascii") + charset.escape.encode("ascii") + tail.encode(charset.codec)


def decode(raw: bytes, charset: Charset, vr: str) -> str:
    """Decode element bytes written in ``charset`` (the inverse of :func:`encode`).

    Trailing padding (space or NUL) is stripped.  Used by the tests to check that
    what was planted is what a conformant reader gets back.
    """
    raw = raw.rstrip(b" \x00")
    if not charset.iso2022:
        return raw.decode(charset.codec)
    delims = _delimiters(vr).encode("ascii")
    if charset.g0:
        return "".join(
            p if isinstance(p, str) else p.decode(charset.codec) for p in _split_g0(raw, delims)
        )
    out: list[str] = []
    for piece in re.split(b"([" + re.escape(delims) + b"])", raw):
        if len(piece) == 1 and piece in delims:
            out.append(piece.decode("ascii"))
        else:
            out.append(piece.replace(charset.escape.encode("ascii"), b"").decode(charset.codec))
    return "".join(out)


def _split_g0(raw: bytes, delims: bytes) -> list[bytes | str]:
    """Split at delimiters that occur in ASCII mode only.

    JIS X 0208 in G0 uses 7-bit byte pairs, so a kanji such as ソ (0x25 0x5C) contains
    the backslash byte; it is a value delimiter only while ASCII is designated.
    """
    out: list[bytes | str] = []
    current = bytearray()
    ascii_mode = True
    i = 0
    while i < len(raw):
        if raw[i] == 0x1B:
            ascii_mode = raw[i : i + 3] != b"\x1b$B"
            current += raw[i : i + 3]
            i += 3
        elif ascii_mode and raw[i] in delims:
            out += [bytes(current), chr(raw[i])]
            current = bytearray()
            i += 1
        else:
            current.append(raw[i])
            i += 1
    out.append(bytes(current))
    return out


def pad(raw: bytes) -> bytes:
    """Text values are padded with a space to even length (PS3.5 6.2)."""
    return raw + b" " if len(raw) % 2 else raw
