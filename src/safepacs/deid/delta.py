"""The identity delta: everything de-identification removed or replaced, so that

    restore(deidentified, delta) == original      (element by element)

The delta holds references to the original elements while de-identification runs (cheap);
it is serialised only when asked, as a compact JSON document whose elements are encoded as
Explicit VR Little Endian DICOM in their original character set, and sealed with
AES-256-GCM bound to the de-identified object's SOP Instance UID.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from io import BytesIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import correct_ambiguous_vr_element, write_data_element
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from safepacs.errors import DeltaError

#: Path of an element: (tag, item index, tag, item index, ..., ) ending before the element's
#: own tag; ``META`` as first step means the file meta information.
Path = tuple
META = "meta"
_MAGIC = b"SPDELTA1"
#: 1: header elements only; 2: adds the pixel section ("px") of Clean Pixel Data.
_VERSION = 2
#: a kept pixel group this large is base64-encoded and compressed piece by piece
_STREAMED = 1 << 20
#: bytes of the group per piece (a multiple of 3: the pieces' base64 joins up)
_CHUNK = 3 << 20
#: stands in for the group's base64 text in the JSON while the rest is serialised
_GROUP_MARK = "@safepacs:pixel-group@"
_READABLE = (1, 2)


@dataclass
class _Entry:
    original: DataElement | RawDataElement | None
    charset: object  # encoding in force in the container (str or list)
    container: Dataset | None


@dataclass
class PixelDelta:
    """What pixel cleaning changed, enough to give the original pixel data back exactly.

    ``patches`` (uncompressed originals): per frame and box, the original stored bytes,
    with ``dtype`` the stored array's numpy type.  ``group`` (compressed originals): the
    original pixel-group elements byte for byte, since re-encoding cannot promise the same
    compressed bytes.
    """

    dtype: str = ""
    patches: list[tuple[int, int, int, int, int, bytes]] = field(default_factory=list)
    group: bytes | None = None

    def to_doc(self, group: str | None = None) -> dict:
        """The JSON document; ``group`` stands in for the pixel group's base64 text (see
        :meth:`IdentityDelta.to_bytes`)."""
        if group is None and self.group is not None:
            group = base64.b64encode(self.group).decode("ascii")
        return {
            "d": self.dtype,
            "p": [[f, x, y, w, h, base64.b64encode(b).decode("ascii")]
                  for f, x, y, w, h, b in self.patches],
            "g": group,
        }

    @classmethod
    def from_doc(cls, doc: dict) -> PixelDelta:
        try:
            patches = [(int(f), int(x), int(y), int(w), int(h), base64.b64decode(b))
                       for f, x, y, w, h, b in doc.get("p", [])]
            group = doc.get("g")
            return cls(str(doc.get("d", "")), patches,
                       None if group is None else base64.b64decode(group))
        except (TypeError, ValueError):
            raise DeltaError("identity delta pixel section is corrupt") from None


@dataclass
class IdentityDelta:
    """Original elements keyed by (container path, tag); None means "was absent"."""

    entries: dict[tuple[Path, int], _Entry] = field(default_factory=dict)
    pixels: PixelDelta | None = None
    #: the original's 128-byte preamble when it held anything (de-identified files get a
    #: zeroed one): a DICOM-TIFF file's TIFF header lives there, so restore gives it back
    preamble: bytes | None = None
    #: NUL bytes that ended the original after its pixel data (left out of the output)
    padding: int = 0
    #: the original was a bare dataset (no preamble, no file meta): the output has file meta
    #: built for it, which restore leaves out again
    bare: bool = False

    def record(self, path: Path, container: Dataset, tag: int, charset: object = None) -> None:
        """Remember the original element before the engine changes it (first change wins).

        ``charset`` is the character set in force where the element lives (items inherit
        their parent's); it defaults to the container's own.
        """
        original = container.get_item(tag) if tag in container else None
        if isinstance(original, DataElement) and original.VR != "SQ":
            # a snapshot: ``ds.Keyword = value`` changes the element object in place (pixel
            # cleaning's write-back does, to PhotometricInterpretation and TransferSyntaxUID)
            original = copy.deepcopy(original)
        self.keep(path, tag, original, container._character_set if charset is None else charset, container)

    def keep(
        self, path: Path, tag: int, original: DataElement | RawDataElement | None,
        charset: object, container: Dataset,
    ) -> None:
        """Like :meth:`record`, for a caller that already holds the original element."""
        key = (path, int(tag))
        if key not in self.entries:
            self.entries[key] = _Entry(original, charset, container)

    def __len__(self) -> int:
        return len(self.entries)

    # --- serialisation ------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Plain serialisation (compressed JSON).  Encrypt it before it leaves memory."""
        out = []
        for (path, tag), entry in sorted(self.entries.items(), key=lambda kv: _sort_key(kv[0])):
            out.append(
                {
                    "p": list(path),
                    "t": tag,
                    "c": _charset_list(entry.charset),
                    "e": None if entry.original is None else _encode_element(entry),
                }
            )
        doc: dict = {"v": _VERSION, "entries": out}
        group = self.pixels.group if self.pixels is not None else None
        streamed = group is not None and len(group) >= _STREAMED
        if self.pixels is not None:
            doc["px"] = self.pixels.to_doc(_GROUP_MARK if streamed else None)
        if self.preamble is not None:
            doc["pre"] = base64.b64encode(self.preamble).decode("ascii")
        if self.padding:
            doc["pad"] = self.padding
        if self.bare:
            doc["bare"] = True
        # level 1: as small as 6 within 1% (a header's JSON, a pixel group's base64) and a
        # third faster, which shows on a cine's kept loop (2.8 s against 4.5 s for 105 MB);
        # any level reads back alike
        text = json.dumps(doc, separators=(",", ":"))
        mark = json.dumps(_GROUP_MARK)
        if not streamed or text.count(mark) != 1:
            if streamed:  # the mark is elsewhere too (it cannot be): the plain way
                doc["px"] = self.pixels.to_doc()  # type: ignore[union-attr]
                text = json.dumps(doc, separators=(",", ":"))
            return zlib.compress(text.encode("ascii"), 1)
        # A kept cine: the same text, compressed as its base64 is made a few MB at a time,
        # rather than held whole as base64, as JSON and as its bytes (three times 140 MB
        # for a 105 MB loop)
        head, tail = text.split(mark)
        z = zlib.compressobj(1)
        out = [z.compress(head.encode("ascii") + b'"')]
        assert group is not None
        for at in range(0, len(group), _CHUNK):
            out.append(z.compress(base64.b64encode(group[at : at + _CHUNK])))
        out.append(z.compress(b'"' + tail.encode("ascii")))
        out.append(z.flush())
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> LoadedDelta:
        try:
            doc = json.loads(zlib.decompress(data))
        except (zlib.error, ValueError) as exc:
            raise DeltaError(f"identity delta is corrupt ({exc.__class__.__name__})") from None
        if not isinstance(doc, dict) or doc.get("v") not in _READABLE:
            version = doc.get("v") if isinstance(doc, dict) else None
            raise DeltaError(f"identity delta version {version!r} is not supported")
        pixels = doc.get("px")
        preamble = _preamble(doc.get("pre"))
        padding = doc.get("pad", 0)
        if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
            raise DeltaError("identity delta padding is corrupt")
        bare = doc.get("bare", False)
        if not isinstance(bare, bool):
            raise DeltaError("identity delta bare-dataset flag is corrupt")
        return LoadedDelta(doc["entries"], None if pixels is None else PixelDelta.from_doc(pixels), preamble,
                           padding, bare)

    # --- encryption ---------------------------------------------------------------
    def seal(self, key: bytes, sop_instance_uid: str) -> bytes:
        return seal(self.to_bytes(), key, sop_instance_uid)


@dataclass
class LoadedDelta:
    """A delta read back from storage: applies to a de-identified dataset."""

    entries: list[dict]
    pixels: PixelDelta | None = None
    preamble: bytes | None = None
    padding: int = 0
    bare: bool = False

    def original_text(self, tag: int) -> str | None:
        """The recorded original value of the top-level text element ``tag`` (a UID, say),
        or None when the delta holds none (kept, or absent from the original)."""
        for entry in self.entries:
            if entry["p"] == [] and entry["t"] == tag and entry["e"] is not None:
                value = _decode_element(entry["e"], entry["c"]).value
                text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
                return text.strip().rstrip("\x00")
        return None

    def apply(self, ds: Dataset) -> Dataset:
        """Return a copy of ``ds`` with every original header element put back (the pixel
        section is applied by :func:`safepacs.deid.pixels.clean.restore_pixels`)."""
        out = copy.deepcopy(ds)
        # Deepest paths last would also work; sequences the engine walked keep their items,
        # so every container on a path exists.  Removed whole sequences come back whole.
        sequences = []
        for entry in sorted(self.entries, key=lambda e: len(e["p"])):
            container = _navigate(out, entry["p"])
            tag = entry["t"]
            if entry["e"] is None:
                if tag in container:
                    del container[tag]
            else:
                elem = _decode_element(entry["e"], entry["c"], container)
                if isinstance(elem, DataElement) and elem.VR == "SQ":
                    sequences.append(elem)
                if isinstance(elem, RawDataElement):
                    # as recorded: item assignment would convert a private element whose
                    # creator is present (UN becomes its private dictionary VR)
                    container._dict[BaseTag(tag)] = elem
                else:
                    container[tag] = elem
        # Raw values are the original's bytes, in the character set it declared (which
        # de-identification may have corrected: safepacs.deid.mislabelled): written as they
        # are, never decoded and encoded again into the restored declaration.
        implicit, little = out.original_encoding
        out.set_original_encoding(implicit, little, out._character_set)
        syntax = str(getattr(out, "file_meta", {}).get("TransferSyntaxUID", ""))
        if syntax and syntax != ExplicitVRBigEndian:
            for elem in sequences:  # restored in a little endian syntax
                _as_written_in(elem, syntax == ImplicitVRLittleEndian)
        if self.preamble is not None and hasattr(out, "preamble"):
            out.preamble = self.preamble
        return out


def _preamble(b64: object) -> bytes | None:
    if b64 is None:
        return None
    try:
        preamble = base64.b64decode(str(b64), validate=True)
    except ValueError:
        preamble = b""
    if len(preamble) != 128:
        raise DeltaError("identity delta preamble is corrupt")
    return preamble


def _sort_key(key: tuple[Path, int]) -> tuple:
    path, tag = key
    return (len(path), tuple(str(p) for p in path), tag)


def _charset_list(charset: object) -> list[str]:
    if isinstance(charset, str):
        return [charset]
    return [str(c) for c in (charset or [])]


#: VRs whose explicit-VR header has a 4-byte length (PS3.5 7.1.2); the rest have 2 bytes
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SV", "UC", "UR", "UT", "UV"})
#: VRs whose value is a character string: the same bytes whatever the byte order
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM",
                       "UC", "UI", "UR", "UT"})
_SHORT_VRS = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH",
                        "SL", "SS", "ST", "TM", "UI", "UL", "US"})


def _raw_bytes(elem: object) -> bytes | None:
    """The element in explicit VR little endian straight from the bytes it was read as, or
    None where pydicom must convert it.  Converting and re-writing every removed element was
    a fifth of the ingest time; copying the file's own bytes is also the most faithful
    record.  Only plain cases qualify: little endian, a known, unambiguous VR (read, or the
    dictionary's for a standard element read implicitly), a defined length (sequences, UN and
    implicit private elements take the slow path).  An odd length, which the standard forbids
    and real files have, is recorded as it is: pydicom's writer would pad it."""
    if not isinstance(elem, RawDataElement) or not elem.is_little_endian:
        return None
    vr, value = elem.VR, elem.value
    if elem.is_implicit_VR:
        vr = _implicit_vr(int(elem.tag))
    if not isinstance(value, bytes) or len(value) != elem.length:
        return None
    tag = int(elem.tag)
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if vr in _LONG_VRS or vr == "UN":  # UN as read (explicit): implicit reads never give it
        return head + vr.encode("ascii") + struct.pack("<HL", 0, len(value)) + value
    if vr in _SHORT_VRS and len(value) <= 0xFFFF:
        return head + vr.encode("ascii") + struct.pack("<H", len(value)) + value
    return None


def _implicit_vr(tag: int) -> str | None:
    if tag & 0x10000:
        return None  # private: its VR depends on its creator
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def _encode_element(entry: _Entry) -> str:
    return base64.b64encode(_element_bytes(entry.original, entry.charset, entry.container)).decode("ascii")


def _element_bytes(elem: DataElement | RawDataElement, encodings: object, container: Dataset | None) -> bytes:
    """One element in explicit VR little endian: its own bytes where it was read as they
    are (:func:`_raw_bytes`), else as pydicom writes it."""
    fast = _raw_bytes(elem)
    if fast is not None:
        return fast
    if isinstance(elem, RawDataElement):
        elem = convert_raw_data_element(elem, encoding=encodings, ds=container)
    if elem.VR == "SQ":
        return _sequence_bytes(elem, encodings)
    if elem.VR and " or " in elem.VR and container is not None:
        elem = correct_ambiguous_vr_element(copy.copy(elem), container, True)
    if not elem.VR or " or " in elem.VR:
        elem = copy.copy(elem)
        elem.VR = "UN"
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_data_element(fp, elem, encodings)
    return fp.getvalue()


def _sequence_bytes(elem: DataElement, encodings: object) -> bytes:
    """A sequence (its lengths defined or undefined, as read), each element of its items recorded by
    :func:`_element_bytes`.  pydicom's writer converts every element of an item read in
    implicit VR before writing it in explicit VR: text padded with NUL (GE writes it so)
    came back padded with a space."""
    body = bytearray()
    for item in elem.value or []:
        inner = item._character_set if "SpecificCharacterSet" in item else encodings
        data = b"".join(_element_bytes(item.get_item(sub), inner, item) for sub in sorted(item.keys()))
        if getattr(item, "is_undefined_length_sequence_item", False):
            body += _ITEM + _UNDEFINED + data + _ITEM_END
        else:
            body += _ITEM + struct.pack("<L", len(data)) + data
    tag = int(elem.tag)
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"SQ\0\0"
    if elem.is_undefined_length:
        return head + _UNDEFINED + bytes(body) + _SEQUENCE_END
    return head + struct.pack("<L", len(body)) + bytes(body)


_UNDEFINED = b"\xff\xff\xff\xff"
_ITEM = b"\xfe\xff\x00\xe0"
_ITEM_END = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _as_written_in(elem: DataElement, implicit: bool) -> None:
    """Items of a sequence read back from a delta (explicit VR little endian) declared as
    read in the little endian syntax they are written in: their raw elements then go out
    as the bytes they hold (text bytes and little endian numbers are the same in both)
    instead of being converted, which replaced a NUL padding by a space."""
    for item in elem.value or []:
        # nested sequences first, parsed while their item still reads as explicit VR
        nested = [item[tag] for tag, sub in list(item._dict.items()) if sub.VR == "SQ"]
        item.set_original_encoding(implicit, True, item._character_set)
        for sub in nested:
            _as_written_in(sub, implicit)


def _decode_element(b64: str, charset: list[str], container: Dataset | None = None) -> DataElement:
    """One recorded element back.  Converted in the container it returns to: a private
    element recorded as UN (read implicitly, its creator removed by then) gets its VR from
    the private dictionary once its creator is back."""
    raw_bytes = base64.b64decode(b64)
    ds = read_dataset(BytesIO(raw_bytes), is_implicit_VR=False, is_little_endian=True)
    raw = next(iter(ds.elements()))
    if isinstance(raw, RawDataElement) and raw.VR in _TEXT_VRS and raw.length != 0xFFFFFFFF:
        # Text comes back as the bytes it was, padding and all: converting would strip
        # trailing spaces, and the original would no longer be restored byte for byte.
        # (Text has no byte order, so these bytes suit any transfer syntax.)
        return raw
    if isinstance(raw, RawDataElement) and raw.length != 0xFFFFFFFF and raw.length % 2:
        # An odd length, as the original had it (recorded from its little endian bytes, the
        # byte order it is restored in): converted, pydicom's writer would pad it.
        return raw
    if isinstance(raw, RawDataElement) and raw.VR == "UN" and raw.length != 0xFFFFFFFF:
        # UN as it was written (private elements of an explicit VR file, often): converted,
        # it would come back under its private dictionary VR (SH for UN). Its bytes are
        # the original's in any byte order; pydicom converts it when it is read.
        return raw
    if isinstance(raw, RawDataElement):
        encoding = charset if len(charset) != 1 else charset[0]
        return convert_raw_data_element(raw, encoding=encoding or "iso8859", ds=ds if container is None else container)
    return raw


def _navigate(ds: Dataset, path: list) -> Dataset:
    node = ds
    steps = list(path)
    if steps and steps[0] == META:
        node = ds.file_meta
        steps = steps[1:]
    for i in range(0, len(steps), 2):
        node = node[steps[i]].value[steps[i + 1]]
    return node


# --- AES-256-GCM sealing ------------------------------------------------------------
def _aad(sop_instance_uid: str) -> bytes:
    return b"safepacs-delta-v1\x00" + sop_instance_uid.encode("ascii")


def seal(plain: bytes, key: bytes, sop_instance_uid: str) -> bytes:
    """Encrypt ``plain`` under ``key``; the object's new SOP Instance UID is authenticated."""
    nonce = os.urandom(12)
    return _MAGIC + nonce + AESGCM(key).encrypt(nonce, plain, _aad(sop_instance_uid))


def unseal(blob: bytes, key: bytes, sop_instance_uid: str) -> LoadedDelta:
    """Decrypt a sealed delta; fails if the key is wrong or it belongs to another object."""
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 12 + 16:
        raise DeltaError("not a safepacs identity delta")
    nonce = blob[len(_MAGIC) : len(_MAGIC) + 12]
    try:
        plain = AESGCM(key).decrypt(nonce, blob[len(_MAGIC) + 12 :], _aad(sop_instance_uid))
    except InvalidTag:
        raise DeltaError(
            "identity delta does not open: wrong key, or it belongs to another object"
        ) from None
    return IdentityDelta.from_bytes(plain)


DELTA_KEY_PURPOSE = "safepacs identity delta v1"
