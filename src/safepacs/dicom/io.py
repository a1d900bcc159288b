"""Read a DICOM file's header without its pixels, and write a new header + the same pixels.

Header de-identification never needs the pixel values, so they are not decoded: the bytes of
the pixel data element are located, checked for length, and copied from the input file to
the output file by the kernel (``copy_file_range``).  This is what lets safepacs run faster
than a plain pydicom read + write.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom import Dataset
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import FileMetaDataset, validate_file_meta
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_data_element, write_dataset, write_sequence_item
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from safepacs.dicom.quiet import skip_value_checks
from safepacs.dicom.structure import (
    StructureError,
    _Scanner,
    check_structure,
    meta_end,
    top_level_spans,
)
from safepacs.errors import MEDIA_INDEX_REASON, InvalidDicom, MediaIndex, RejectedFile
from safepacs.files import open_new, reserve

skip_value_checks()  # every reader of datasets comes through here: see safepacs.dicom.quiet


class DuplicateObject(RejectedFile):
    """Two inputs of one run map to the same output object."""

_PIXEL_GROUP = 0x7FE0
_PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}


@dataclass
class DicomFile:
    """A parsed input: the header dataset and where its pixel bytes lie in the file."""

    path: Path
    dataset: Dataset
    pixel_start: int | None  # offset of the first pixel-group element
    pixel_end: int | None  # offset just past the pixel-group elements
    trailer: Dataset | None  # elements after the pixel data (padding, signatures, private)
    #: NUL bytes after the pixel data (no element: a file allocated for a whole volume)
    padding: int = 0
    #: a bare dataset: the file had no preamble and no file meta (its meta was built on reading)
    bare: bool = False

    @property
    def name(self) -> str:
        return self.path.name

    def pixel_group_bytes(self) -> bytes:
        """The pixel-group elements exactly as they lie in the file."""
        assert self.pixel_start is not None and self.pixel_end is not None
        with open(self.path, "rb") as fh:
            fh.seek(self.pixel_start)
            data = fh.read(self.pixel_end - self.pixel_start)
        if len(data) != self.pixel_end - self.pixel_start:
            raise InvalidDicom(f"{self.path.name}: file shrank while reading")
        return data


def read_header(path: Path) -> DicomFile:
    """Parse ``path`` up to its pixel data and locate the pixel bytes.

    Raises :class:`InvalidDicom` with a reason a person can act on; the reason never
    contains a value from the file.
    """
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
        fh = open(path, "rb")
    except OSError as exc:
        raise InvalidDicom(f"{name}: cannot read file ({exc.strerror or exc.__class__.__name__})") from None
    with fh:
        if size == 0:
            raise InvalidDicom(f"{name}: empty file")
        head = fh.read(132)
        if len(head) < 132 or head[128:132] != b"DICM":
            return _read_headerless(path, name)
        found = locate(fh, size, name)
        if found is None:
            # Deflated, or a dataset encoded otherwise than its meta says (seen in the wild):
            # pydicom reads and rewrites it whole, so the pixel element is re-encoded too.
            return _read_whole(path, name)
        src = DicomFile(path, *found)
        if src.pixel_end is not None and src.trailer is None:
            src.padding = size - src.pixel_end  # what locate found to be NUL padding
        return src


Located = tuple[Dataset, int | None, int | None, Dataset | None]


def locate(fh: BinaryIO, size: int, name: str) -> Located | None:
    """Read the header of the Part 10 object in ``fh`` (``size`` bytes, preamble and ``DICM``
    checked by the caller) and find its pixel bytes: (dataset, pixel start, pixel end,
    trailer), or None when the object needs the whole-object slow path (deflated, big
    endian, or encoded otherwise than its meta says).  Shared by files and in-memory objects.
    """
    ds, pos, head = _parse_header(fh, size, name)
    meta = getattr(ds, "file_meta", None)
    tsuid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if tsuid is None:
        tsuid = declare_syntax(ds, name, encapsulated=_encapsulated_at(fh, pos, size, ds))
    implicit = tsuid == ImplicitVRLittleEndian
    little = tsuid != ExplicitVRBigEndian
    if tsuid in (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian) or tuple(
        ds.original_encoding
    ) != (implicit, little):
        return None
    if head is None:
        fh.seek(0)
        head = fh.read(pos)
    if _check_bytes(head[:pos], implicit, little, name):
        return None
    _validate_header(ds, name)
    if pos >= size:
        return ds, None, None, None
    end = _pixel_extent(fh, pos, size, implicit, little, name)
    trailer = None
    if end < size:
        fh.seek(end)
        rest = fh.read(size - end)
        if not rest.strip(b"\x00"):
            return ds, pos, end, None  # NUL padding, no element: left out (restore puts it back)
        try:
            _Scanner(rest, implicit, little).dataset(0, len(rest), implicit, 0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trailer = read_dataset(DicomBytesIO(rest), implicit, little)
                for _ in trailer.elements():
                    pass
        except Exception as exc:
            raise InvalidDicom(f"{name}: malformed data after the pixel data ({_why(exc)})") from None
    return ds, pos, end, trailer


#: the header is parsed from this much of the file read at once, when it lies within: pydicom
#: reading a file element by element asks the kernel for its position ~100 times a file
_HEAD_CHUNK = 64 * 1024
_PIXEL_GROUP_LE = b"\xe0\x7f"  # (7FE0,eeee) little endian: where stop_before_pixels stops


def _parse_header(fh: BinaryIO, size: int, name: str) -> tuple[Dataset, int, bytes | None]:
    """(dataset up to the pixel data, where it stopped, the bytes before it if read)."""
    fh.seek(0)
    chunk = fh.read(min(size, _HEAD_CHUNK))
    for source in (io.BytesIO(chunk), None):
        if source is None:  # the header runs past the chunk: parse from the file itself
            fh.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(source or fh, stop_before_pixels=True)
        except Exception as exc:  # pydicom raises many types on garbage; never leak values
            if source is not None and len(chunk) < size:
                continue  # perhaps only cut short by the chunk
            raise InvalidDicom(f"{name}: malformed DICOM header ({_why(exc)})") from None
        pos = (source or fh).tell()
        whole = len(chunk) == size
        if source is None:
            return ds, pos, None
        if whole or (pos + 4 <= len(chunk) and chunk[pos : pos + 2] == _PIXEL_GROUP_LE):
            return ds, pos, chunk
    raise AssertionError("unreachable")


def _check_bytes(buf: bytes, implicit: bool, little: bool, name: str) -> bool:
    """Strict structure check of everything before the pixel data.

    Returns True when the dataset is implicit VR although its meta says explicit, or
    explicit although it says implicit (writer bugs seen in the wild, which pydicom reads
    by looking at the first element); such files take the slow path.
    """
    try:
        start = meta_end(buf)
    except StructureError as exc:
        raise InvalidDicom(f"{name}: malformed DICOM ({exc})") from None
    try:
        stop = check_structure(buf, start, implicit, little)
    except StructureError as exc:
        if little:
            try:
                check_structure(buf, start, not implicit, True)
                return True
            except StructureError:
                pass
        raise InvalidDicom(f"{name}: malformed DICOM ({exc})") from None
    if stop != len(buf):
        raise InvalidDicom(f"{name}: malformed DICOM (pixel data found at an unexpected offset)")
    return False


def _why(exc: BaseException) -> str:
    """A reason without values: the exception class and, for known-safe messages, the text."""
    text = str(exc)
    safe = ("EOF", "length", "Expected", "bytes", "tag", "sequence", "delimiter", "truncated")
    if len(text) < 160 and any(s.lower() in text.lower() for s in safe) and text.isascii():
        # pydicom's structural messages name tags and lengths, not values
        return f"{exc.__class__.__name__}: {text}"
    return exc.__class__.__name__


#: Media Storage Directory Storage: a DICOMDIR, by its SOP Class rather than its file name
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"

#: ScheduledProcedureStepSequence: what a modality worklist item is made of
_SCHEDULED_STEPS = 0x00400100


def _validate_header(ds: Dataset, name: str) -> None:
    """The structure was checked byte by byte; here only: is this an object at all?

    Values are not converted here (that costs more than the rest of the work); elements
    the engine keeps are copied as they were, the others are decoded when acted on.
    """
    if "SOPInstanceUID" not in ds and "SOPClassUID" not in ds:
        meta = getattr(ds, "file_meta", None)
        if _sop_class_in_meta(meta) == MEDIA_DIRECTORY:
            raise MediaIndex(f"{name}: {MEDIA_INDEX_REASON}")
        if _SCHEDULED_STEPS in ds:  # Orthanc's and DCMTK's .wl files, a worklist export
            raise InvalidDicom(f"{name}: a modality worklist item (a scheduled procedure step), "
                               "not a stored object: there is no image or document to process")
        if meta is not None and ("MediaStorageSOPInstanceUID" in meta or "MediaStorageSOPClassUID" in meta):
            # seen in the wild (derived volumes written by research tools)
            raise InvalidDicom(f"{name}: the dataset has no SOPClassUID or SOPInstanceUID (Type 1); only "
                               "its file meta names the object: an incomplete object, not processed")
        raise InvalidDicom(f"{name}: no SOPClassUID or SOPInstanceUID: not a DICOM object")


def _sop_class_in_meta(meta: Dataset | None) -> str:
    """The file meta's MediaStorageSOPClassUID ("" when absent or unreadable)."""
    try:
        return str(meta.get("MediaStorageSOPClassUID", "") if meta is not None else "").strip("\0 ")
    except Exception:  # noqa: BLE001 - a damaged meta value: the callers refuse the file anyway
        return ""


def _pixel_extent(fh, pos: int, size: int, implicit: bool, little: bool, name: str) -> int:
    """Offset just past the pixel-group (7FE0) elements starting at ``pos``."""
    en = "<" if little else ">"
    fh.seek(pos)
    while pos < size:
        head = fh.read(8)
        if len(head) < 8:
            raise InvalidDicom(f"{name}: truncated file (element header cut short)")
        group, elem = struct.unpack(en + "HH", head[:4])
        if group != _PIXEL_GROUP:
            return pos
        if implicit:
            (length,) = struct.unpack(en + "L", head[4:8])
            hdr = 8
        else:
            vr = head[4:6]
            if vr in _LONG_VRS:
                more = fh.read(4)
                if len(more) < 4:
                    raise InvalidDicom(f"{name}: truncated file (element header cut short)")
                (length,) = struct.unpack(en + "L", more)
                hdr = 12
            else:
                (length,) = struct.unpack(en + "H", head[6:8])
                hdr = 8
        if length == _UNDEFINED:
            pos = _skip_items(fh, pos + hdr, size, en, name)
        else:
            pos = pos + hdr + length
            if pos > size:
                raise InvalidDicom(
                    f"{name}: truncated file (pixel data needs {length} bytes, "
                    f"{size - (pos - length)} present)"
                )
        fh.seek(pos)
    return pos


def _skip_items(fh, pos: int, size: int, en: str, name: str) -> int:
    """Skip encapsulated fragments up to and including the sequence delimiter."""
    while True:
        fh.seek(pos)
        head = fh.read(8)
        if len(head) < 8:
            raise InvalidDicom(f"{name}: truncated file (encapsulated pixel data not terminated)")
        group, elem, length = struct.unpack(en + "HHL", head)
        if (group, elem) == (0xFFFE, 0xE0DD):
            return pos + 8
        if (group, elem) != (0xFFFE, 0xE000) or length == _UNDEFINED:
            raise InvalidDicom(f"{name}: malformed encapsulated pixel data (bad item tag)")
        pos += 8 + length
        if pos > size:
            raise InvalidDicom(f"{name}: truncated file (pixel data fragment cut short)")


def load_pixel_group(src: DicomFile) -> bytes | None:
    """Read the pixel-group elements of ``src`` into its dataset (pixel cleaning needs them)
    and return their bytes exactly as they lie in the input.

    ``src`` is a :class:`DicomFile` or anything with the same ``dataset``, ``pixel_start``,
    ``pixel_end``, ``name`` and ``pixel_group_bytes()`` (the archive's in-memory parse).
    A no-op returning None when the dataset already holds them (files read whole) or has none.
    """
    ds = src.dataset
    if _PIXEL_DATA in ds or src.pixel_start is None or src.pixel_end is None:
        return None
    tsuid = ds.file_meta.TransferSyntaxUID
    implicit = tsuid == ImplicitVRLittleEndian
    little = tsuid != ExplicitVRBigEndian
    data = src.pixel_group_bytes()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            group = read_dataset(DicomBytesIO(data), implicit, little)
            for tag in list(group.keys()):
                elem = group[tag]
                if elem.VR and " or " in elem.VR:
                    elem.VR = "OW" if int(ds.get("BitsAllocated", 8) or 8) > 8 else "OB"
                ds[tag] = elem
    except Exception as exc:  # noqa: BLE001 - never echo values
        raise InvalidDicom(f"{src.name}: malformed pixel data ({_why(exc)})") from None
    return data


def _read_headerless(path: Path, name: str) -> DicomFile:
    """A file holding a bare dataset (see :func:`locate_bare`)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise InvalidDicom(f"{name}: cannot read file ({exc.strerror or exc.__class__.__name__})") from None
    return DicomFile(path, *locate_bare(data, name), bare=True)


def locate_bare(data: bytes, name: str) -> Located:
    """A bare dataset without preamble and file meta (old ACR-NEMA style exports, files
    stripped by some gateways, treatment planning exports) held in ``data``: like
    :func:`locate`, (dataset up to its pixel data, pixel start, pixel end, trailer).

    Accepted only if it is a well-formed little-endian dataset that names its SOP class and
    instance and either ends in complete pixel data or describes none (see
    :func:`bare_header_is_whole`); file meta is then built from what it is.  Shared by
    files and in-memory objects, so both doors accept the same bare datasets."""
    for implicit in (True, False):
        try:
            pos = check_structure(data, 0, implicit, True)
            end = None
            if pos < len(data):
                end = _pixel_extent(io.BytesIO(data), pos, len(data), implicit, True, name)
                _Scanner(data, implicit, True).dataset(end, len(data), implicit, 0)
        except (StructureError, InvalidDicom):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = read_dataset(DicomBytesIO(data), implicit, True, stop_when=at_pixels)
                named = bool(ds.get("SOPClassUID")) and bool(ds.get("SOPInstanceUID"))
                trailer = None
                if end is not None and end < len(data):
                    trailer = read_dataset(DicomBytesIO(data[end:]), implicit, True)
                    for _ in trailer.elements():
                        pass
        except Exception:  # noqa: BLE001 - garbage that happened to scan
            continue
        if not named or (end is None and not bare_header_is_whole(ds)):
            continue
        give_bare_dataset_meta(ds, implicit)
        return ds, (None if end is None else pos), end, trailer
    raise InvalidDicom(f"{name}: not a DICOM file (no DICM prefix at byte 128)")


def read_value(ds: Dataset, tag: int) -> DataElement:
    """``ds[tag]``, leaving the dataset as it was read: pydicom keeps what it decodes (the
    element, and for a private element its creator), and the writer then encodes it anew
    (padding dropped, UN written as the dictionary's VR) where it copied the element's own
    bytes, so a de-identified file lost bytes its identity delta does not hold and restore
    was no longer exact.  Sequences stay decoded (their items are walked)."""
    tag = BaseTag(tag)
    touched = [tag]
    if tag.is_private and tag.element >= 0x1000:
        touched.append(BaseTag((tag.group << 16) | (tag.element >> 8)))  # its creator
    before = {t: ds.get_item(t) for t in touched if t in ds}
    elem = ds[tag]
    for t, raw in before.items():
        now = ds._dict.get(t)
        if now is not raw and now is not None and now.VR != "SQ":
            ds._dict[t] = raw
    return elem


@contextmanager
def header_as_read(ds: Dataset) -> Iterator[None]:
    """Elements of ``ds`` still as read (raw) stay so where the block only reads them.

    Reading converts an element in place, and the writer encodes the converted value anew:
    a value padded with NUL (``MONOCHROME2\\0``, as GE writes it) came out padded with a space,
    a change the identity delta does not hold, so restore was no longer byte for byte.
    Elements the block changed keep their new values."""
    before = {t: e for t, e in ds._dict.items() if isinstance(e, RawDataElement) and e.VR != "SQ"}
    yield
    charset = ds._character_set
    for tag, raw in before.items():
        now = ds._dict.get(tag)
        if now is None or now is raw or isinstance(now, RawDataElement):
            continue
        try:
            unchanged = convert_raw_data_element(raw, encoding=charset, ds=ds).value == now.value
        except Exception:  # noqa: BLE001 - a value that no longer converts: keep what is there
            continue
        if unchanged:
            ds._dict[tag] = raw


def at_pixels(tag, vr, length) -> bool:  # type: ignore[no-untyped-def]
    """``read_dataset``'s stop_when: the pixel data, or anything after it, comes next.
    Where pydicom's ``stop_before_pixels`` stops for a Part 10 file: the pixel group's length
    (7FE0,0000) and offset tables before the pixels stay in the header, so that a bare
    dataset's are recorded (and restored) like any other header element's."""
    return tag >= 0x7FE00008


def bare_header_is_whole(ds: Dataset) -> bool:
    """A bare dataset that ends without pixel data: whole only if it describes no image.
    Without meta (as with it), a dataset cut at an element boundary looks whole; one that
    describes pixels it lacks was cut.  A structure set or plan that says nothing of pixels
    is taken as it is, like the same object with meta."""
    return not any(k in ds for k in ("Rows", "Columns", "BitsAllocated", "PixelData", "FloatPixelData"))


def give_bare_dataset_meta(ds: Dataset, implicit: bool) -> None:
    """File meta for a bare little-endian dataset (no preamble, no meta): its SOP class and
    instance and the transfer syntax it was found to be in; the output then has meta."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.set_original_encoding(implicit, True, ds.get("SpecificCharacterSet", "ISO_IR 6"))


def _read_whole(path: Path, name: str) -> DicomFile:
    """Slow path (e.g. deflated transfer syntax): read everything, pixels included."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            # Files read here are not checked byte by byte: an element whose VR is not one
            # (a damaged big endian file) would only fail later, when acted on or written.
            for _ in ds.iterall():
                pass
    except Exception as exc:
        raise InvalidDicom(f"{name}: malformed DICOM file ({_why(exc)})") from None
    check_whole(ds, name)
    return DicomFile(path, ds, None, None, None)


def check_whole(ds: Dataset, name: str) -> None:
    """What the whole-object path (files and in-memory objects alike) checks after pydicom
    read everything: an object at all, with a transfer syntax in its meta."""
    _validate_header(ds, name)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", ()):
        pixels = ds.get("PixelData")
        declare_syntax(ds, name, encapsulated=bool(getattr(pixels, "is_undefined_length", False)))


def declare_syntax(ds: Dataset, name: str, *, encapsulated: bool) -> str:
    """File meta without a TransferSyntaxUID (old or careless writers): pydicom guessed the
    dataset's encoding from its first bytes, which is all a native object's transfer syntax
    says, so that syntax is written into the meta (and so into the output, and a restored
    original).  Compressed pixel data does not say which codec made it: refused."""
    implicit, little = ds.original_encoding
    if encapsulated or implicit is None or little is None or (implicit and not little):
        why = "its pixel data is compressed by an unknown codec" if encapsulated else "its encoding is unclear"
        raise InvalidDicom(f"{name}: file meta information has no TransferSyntaxUID and {why}")
    tsuid = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = tsuid
    return tsuid


def _encapsulated_at(fh: BinaryIO, pos: int, size: int, ds: Dataset) -> bool:
    """The element at ``pos`` (where the header parse stopped) is encapsulated pixel data."""
    if pos + 12 > size:
        return False
    fh.seek(pos)
    head = fh.read(12)
    implicit, little = ds.original_encoding
    en = "<" if little is not False else ">"
    group, elem = struct.unpack(en + "HH", head[:4])
    if (group, elem) != (_PIXEL_GROUP, 0x0010):
        return False
    (length,) = struct.unpack(en + "L", head[4:8] if implicit else head[8:12])
    return length == 0xFFFFFFFF


def write_atomic(
    src: DicomFile,
    ds: Dataset,
    out: Path,
    *,
    exclusive_since: float | None = None,
    enforce_meta: bool = True,
    pixel_bytes: bytes | None = None,
    group_lengths: bool = False,
    odd_lengths: bool = False,
    preamble: bytes | None = None,
    padding: int = 0,
    bare: bool = False,
    private: bool = False,
) -> None:
    """Write ``ds`` (a header) followed by the pixel bytes of ``src`` to ``out``, atomically.

    The pixel group comes, in this order of preference, from ``pixel_bytes`` (the encoded
    pixel-group elements, e.g. an original kept in an identity delta), from ``ds`` itself
    when its pixel data was loaded and replaced in memory (pixel cleaning), or is copied
    from ``src`` by byte range.

    The file appears under its final name only once complete (temp file + rename), so an
    interrupted run leaves no half-written file.  With ``exclusive_since`` (a run's start
    time), a file already written by this run is never replaced: two inputs with the same
    SOP Instance UID are a conflict, not a silent overwrite.  The 128-byte preamble is zeroed: a
    preamble can carry anything (TIFF headers, text) and nothing in it is needed; restore
    passes the original's as ``preamble``.

    ``group_lengths`` (restore): the retired group length elements ``ds`` holds are written
    too, with the values they hold (pydicom's writer drops them all), so that a restored
    original has every element of the original, stale lengths included.  ``odd_lengths``
    (restore): a value of odd length as read (the standard forbids them, real files hold
    them) is written as it is; otherwise pydicom pads it to an even length.  ``padding``
    (restore): that many NUL bytes end the file, as they ended the original.  ``bare``
    (restore): the original was a bare dataset, so neither preamble nor file meta is written.
    ``private`` (restore: an identified original): the file is readable by its owner only.
    """
    with written_back(src.path.name):
        _write_atomic(src, ds, out, exclusive_since, enforce_meta, pixel_bytes, group_lengths, preamble,
                      odd_lengths, padding, bare, private)


@contextmanager
def written_back(name: str) -> Iterator[None]:
    """pydicom's writer refusing, inside the block, an element that was read as it stood (a
    damaged value or VR that reading let through, text that cannot be encoded back in its
    character set): the object is malformed (InvalidDicom).  Only the tag is kept from the
    writer's message, which can quote values."""
    try:
        yield
    except (TypeError, ValueError, NotImplementedError, OverflowError, struct.error) as exc:
        found = _WRITE_ERROR_TAG.search(str(exc))
        what = f"element ({found[1]},{found[2]})" if found else f"the header ({exc.__class__.__name__})"
        raise InvalidDicom(f"{name}: malformed DICOM ({what} cannot be written as it was read)") from None


#: the tag pydicom names when writing an element fails ("With tag (0010,0010) got ...")
_WRITE_ERROR_TAG = re.compile(r"With tag \(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\) got exception")


def _write_atomic(src: DicomFile, ds: Dataset, out: Path, exclusive_since: float | None,
                  enforce_meta: bool, pixel_bytes: bytes | None, group_lengths: bool = False,
                  preamble: bytes | None = None, odd_lengths: bool = False, padding: int = 0,
                  bare: bool = False, private: bool = False) -> None:
    meta = ds.file_meta
    tsuid = meta.TransferSyntaxUID
    implicit = tsuid == ImplicitVRLittleEndian
    little = tsuid != ExplicitVRBigEndian
    groups = _group_lengths(ds) if group_lengths else {}
    with _atomic(Path(out), exclusive_since, 0o600 if private else 0o666) as fh:
        fp = DicomBytesIO()
        if not bare:
            fp.write((preamble if preamble is not None and len(preamble) == 128 else b"\x00" * 128) + b"DICM")
            write_meta(fp, meta, enforce_standard=enforce_meta)
        fp.is_implicit_VR = implicit
        fp.is_little_endian = little
        if tsuid == DeflatedExplicitVRLittleEndian:
            fh.write(fp.getvalue())
            _write_deflated(fh, ds)
        elif pixel_bytes is not None or (
            src.pixel_start is not None
            and src.pixel_end is not None
            and _PIXEL_DATA not in ds
        ):
            head, tail = _split_at_pixels(ds)
            _write_body(fp, head, implicit, little, groups, odd_lengths)
            if _PIXEL_GROUP in groups and not _starts_with_group_length(src, pixel_bytes):
                fp.write(_group_length_element(_PIXEL_GROUP, groups[_PIXEL_GROUP], implicit, little))
            fh.write(fp.getvalue())
            fh.flush()
            if pixel_bytes is not None:
                fh.write(pixel_bytes)
            else:
                assert src.pixel_start is not None and src.pixel_end is not None
                count = src.pixel_end - src.pixel_start
                reserve(fh.fileno(), count, start=fh.tell())
                _copy_range(src.path, fh.fileno(), src.pixel_start, count)
            _write_tail(fh, tail, implicit, little)
        elif not groups and not odd_lengths and little and _large_pixel_value(ds):
            # pixels made here (cleaned): written straight to the file, not copied into
            # the header's buffer and out of it again (100 MB twice, for a cleaned cine)
            head, tail = _split_at_pixels(ds)
            _write_body(fp, head, implicit, little, groups, odd_lengths)
            fh.write(fp.getvalue())
            for tag in sorted(t for t in ds.keys() if t >> 16 == _PIXEL_GROUP):
                _write_pixel_element(fh, ds, tag, implicit)
            _write_tail(fh, tail, implicit, little)
        else:
            _write_body(fp, ds, implicit, little, groups, odd_lengths)
            fh.write(fp.getvalue())
        fh.write(b"\x00" * padding)


def _write_tail(fh: BinaryIO, tail: Dataset | None, implicit: bool, little: bool) -> None:
    """The elements that sort after the pixel data (see :func:`_split_at_pixels`), if any."""
    if tail is None:
        return
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    write_dataset(fp, tail)
    fh.write(fp.getvalue())


#: pixel values this large are written straight to the file (see _write_atomic)
_DIRECT_PIXELS = 1 << 20


def _large_pixel_value(ds: Dataset) -> bool:
    elem = ds._dict.get(_PIXEL_DATA)  # type: ignore[attr-defined]
    return elem is not None and isinstance(elem.value, bytes) and len(elem.value) >= _DIRECT_PIXELS


def _write_pixel_element(fh: BinaryIO, ds: Dataset, tag: int, implicit: bool) -> None:
    """One pixel-group element of ``ds`` (little endian) as pydicom writes it; a large
    OB/OW value goes to ``fh`` as it is, after its header (an encapsulated one with
    undefined length, then its sequence delimiter; an odd length padded with a NUL)."""
    elem = ds[tag]
    value = elem.value
    if not (tag == _PIXEL_DATA and isinstance(value, bytes) and (implicit or elem.VR in ("OB", "OW"))):
        fp = DicomBytesIO()
        fp.is_implicit_VR, fp.is_little_endian = implicit, True
        write_data_element(fp, elem)
        fh.write(fp.getvalue())
        return
    pad = b"\x00" if len(value) % 2 else b""
    undefined = elem.is_undefined_length
    fh.write(_element_header(tag, elem.VR, _UNDEFINED if undefined else len(value) + len(pad), implicit))
    fh.write(value)
    fh.write(pad)
    if undefined:
        fh.write(_SEQUENCE_END)


def _group_lengths(ds: Dataset) -> dict[int, int]:
    """The retired group lengths ``ds`` holds (groups after file meta and command), by group."""
    found = {}
    for tag in ds.keys():
        if not tag & 0xFFFF and tag >> 16 > 6:
            try:
                found[tag >> 16] = int(ds[tag].value)
            except (TypeError, ValueError):
                continue  # not a number: nothing a reader could use
    return found


def _group_length_element(group: int, value: int, implicit: bool, little: bool) -> bytes:
    en = "<" if little else ">"
    length = struct.pack(en + "L", 4) if implicit else b"UL" + struct.pack(en + "H", 4)
    return struct.pack(en + "HH", group, 0) + length + struct.pack(en + "L", value & 0xFFFFFFFF)


def _starts_with_group_length(src: DicomFile, pixel_bytes: bytes | None) -> bool:
    """Whether the pixel group about to be written holds its own (7FE0,0000) already."""
    if pixel_bytes is not None:
        head = pixel_bytes[:4]
    else:
        assert src.pixel_start is not None
        with open(src.path, "rb") as fh:
            head = os.pread(fh.fileno(), 4, src.pixel_start)
    return head in (b"\xe0\x7f\x00\x00", b"\x7f\xe0\x00\x00")


def _write_body(fp: DicomBytesIO, ds: Dataset, implicit: bool, little: bool, groups: dict[int, int],
                odd_lengths: bool = False) -> None:
    """``ds`` written to ``fp``; each group in ``groups`` gets its length element back."""
    if not groups:
        _write_fast(fp, ds, implicit, little, odd_lengths=odd_lengths)
        return
    body = DicomBytesIO()
    body.is_implicit_VR, body.is_little_endian = implicit, little
    _write_fast(body, ds, implicit, little, odd_lengths=odd_lengths)
    fp.write(with_group_lengths(body.getvalue(), groups, implicit, little))


def with_group_lengths(body: bytes, groups: dict[int, int], implicit: bool, little: bool) -> bytes:
    """``body`` (a dataset's elements, none of them a group length) with the group length
    element (gggg,0000) UL of each group in ``groups`` put back before the group's first
    element."""
    firsts: dict[int, int] = {}
    for tag, start, _ in top_level_spans(body, implicit, little):
        firsts.setdefault(tag >> 16, start)
    out, pos = [], 0
    for group in sorted(g for g in firsts if g in groups):
        out.append(body[pos : firsts[group]])
        out.append(_group_length_element(group, groups[group], implicit, little))
        pos = firsts[group]
    out.append(body[pos:])
    return b"".join(out)


@contextmanager
def _atomic(out: Path, exclusive_since: float | None, perm: int = 0o666) -> Iterator[BinaryIO]:
    """A new file open for writing that appears as ``out`` only once the block completes
    (temp file + rename; with ``exclusive_since``, never over a file of this run)."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    fh = create_file(tmp, perm)
    try:
        with fh:
            yield fh
        if exclusive_since is None:
            os.replace(tmp, out)
        else:
            _publish_exclusive(tmp, out, exclusive_since)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_bytes_atomic(out: Path, data: bytes, *, exclusive_since: float | None = None) -> None:
    """``data`` as the file ``out``, all or nothing (temp file + rename); with
    ``exclusive_since`` (a run's start), :class:`DuplicateObject` rather than over a file of
    this run."""
    with _atomic(Path(out), exclusive_since) as fh:
        fh.write(data)


_LONG_VR_STR = {v.decode() for v in _LONG_VRS}


def create_file(path: Path, perm: int = 0o666) -> BinaryIO:
    """Open a new file for writing, making its folders only when they are missing: most
    outputs land in a folder made for an earlier file, and a ``mkdir`` per file (a failed
    system call and a ``stat``) was a measurable share of the run on a busy disk.  Never
    through a link planted at the name (see :mod:`safepacs.files`)."""
    return open_new(path, "wb", perm=perm)  # type: ignore[return-value]
_GROUP_LENGTH = 0x00020000


def write_meta(fp: DicomBytesIO, meta: FileMetaDataset, *, enforce_standard: bool = True) -> None:
    """Write the file meta group like pydicom's ``write_file_meta_info`` (same checks, same
    added elements, group length recomputed), copying the elements read from the input as
    bytes: re-encoding them through pydicom cost about a millisecond a file."""
    validate_file_meta(meta, enforce_standard)
    if enforce_standard and _GROUP_LENGTH not in meta:
        meta.FileMetaInformationGroupLength = 0
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    has_length = _GROUP_LENGTH in meta
    if has_length:
        body = {t: e for t, e in meta._dict.items() if t != _GROUP_LENGTH}
        rest = FileMetaDataset()
        rest._dict.update(body)
        # the same provenance as ``meta``, so that raw elements are copied as bytes
        rest.set_original_encoding(False, True, meta.original_character_set)
        _write_fast(buffer, rest, False, True)
        meta.FileMetaInformationGroupLength = buffer.tell()
        head = DicomBytesIO()
        head.is_little_endian = True
        head.is_implicit_VR = False
        write_data_element(head, meta[_GROUP_LENGTH])
        fp.write(head.getvalue())
    else:
        _write_fast(buffer, meta, False, True)
    fp.write(buffer.getvalue())


def _write_fast(
    fp: DicomBytesIO, ds: Dataset, implicit: bool, little: bool, parent_encoding: object = None,
    *, odd_lengths: bool = False,
) -> None:
    """Write ``ds`` like pydicom's ``write_dataset``, copying untouched raw elements as bytes.

    Elements the engine kept are still the raw bytes read from the input, in the input's
    transfer syntax and character set, which are also the output's: re-emitting them
    verbatim is exact and several times faster than decoding and re-encoding them.
    Sequences are written item by item the same way; everything else (new values in other
    character sets, odd lengths unless ``odd_lengths``, items made here) goes through pydicom.
    """
    if not little or ds.original_character_set != ds._character_set:
        if parent_encoding is None:
            write_dataset(fp, ds)
        else:
            write_dataset(fp, ds, parent_encoding)  # type: ignore[arg-type]
        return
    encoding = ds.get("SpecificCharacterSet", parent_encoding)
    out = fp.write
    for tag in sorted(ds.keys()):
        if tag.element == 0 and tag.group > 6:
            continue
        elem = ds.get_item(tag)
        value = elem.value if isinstance(elem, RawDataElement) else None
        if (
            isinstance(elem, RawDataElement)
            and isinstance(value, bytes)
            and elem.length != _UNDEFINED
            and len(value) == elem.length
            and (odd_lengths or not len(value) & 1)
            and (implicit or (elem.VR and elem.VR != "SQ"))
        ):
            if not implicit and elem.VR not in _LONG_VR_STR and len(value) > 0xFFFF:
                write_data_element(fp, ds[tag], encoding)
                continue
            out(_element_header(tag, elem.VR, len(value), implicit))
            out(value)
        else:
            elem = ds[tag]
            if elem.VR == "SQ" and little:
                _write_sequence(fp, elem, implicit, encoding, odd_lengths)
                continue
            text = _ascii_text(elem)
            if text is None:
                write_data_element(fp, elem, encoding)
                continue
            out(_element_header(tag, elem.VR, len(text), implicit))
            out(text)


_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
_ITEM_END = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
_SEQUENCE_END = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


def _write_sequence(fp: DicomBytesIO, elem, implicit: bool, encoding: object,  # type: ignore[no-untyped-def]
                    odd_lengths: bool = False) -> None:
    """A sequence, little endian, byte for byte as pydicom writes it (item lengths
    computed, undefined lengths kept undefined), its items through :func:`_write_fast`."""
    encodings = convert_encodings(encoding or [default_encoding])
    body = DicomBytesIO()
    body.is_implicit_VR = implicit
    body.is_little_endian = True
    for item in elem.value or ():
        if tuple(item.original_encoding) != (implicit, True):
            write_sequence_item(body, item, encodings)  # an item made here: pydicom decides
            continue
        sub = DicomBytesIO()
        sub.is_implicit_VR = implicit
        sub.is_little_endian = True
        _write_fast(sub, item, implicit, True, encodings, odd_lengths=odd_lengths)
        data = sub.getvalue()
        if getattr(item, "is_undefined_length_sequence_item", False):
            body.write(_ITEM + struct.pack("<L", _UNDEFINED) + data + _ITEM_END)
        else:
            body.write(_ITEM + struct.pack("<L", len(data)) + data)
    value = body.getvalue()
    undefined = elem.is_undefined_length
    fp.write(_element_header(elem.tag, "SQ", _UNDEFINED if undefined else len(value), implicit))
    fp.write(value)
    if undefined:
        fp.write(_SEQUENCE_END)


def _element_header(tag: int, vr: str, length: int, implicit: bool) -> bytes:
    """Tag, VR and length of an element, little endian (PS3.5 7.1)."""
    group, element = tag >> 16, tag & 0xFFFF
    if implicit:
        return struct.pack("<HHL", group, element, length)
    if vr in _LONG_VR_STR:
        return struct.pack("<HH2sHL", group, element, vr.encode(), 0, length)
    return struct.pack("<HH2sH", group, element, vr.encode(), length)


_ASCII_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)


def _ascii_text(elem) -> bytes | None:  # type: ignore[no-untyped-def]
    """The encoded value of a new plain-ASCII text element (dummies, UIDs, emptied values),
    padded as the standard says; None when pydicom must encode it (charsets, numbers)."""
    if elem.VR not in _ASCII_TEXT_VRS:
        return None
    value = elem.value
    if value is None or value == "":
        return b""
    if isinstance(value, str):
        text = value
    elif type(value).__name__ == "PersonName" and str(value).isascii():
        text = str(value)
    elif isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        if not all(isinstance(v, str) for v in value):
            return None
        text = "\\".join(value)
    else:
        return None
    if not text.isascii():
        return None
    data = text.encode("ascii")
    if len(data) & 1:
        data += b"\x00" if elem.VR == "UI" else b" "
    return data if len(data) <= 0xFFFF or elem.VR in _LONG_VR_STR else None


def _publish_exclusive(tmp: Path, out: Path, since: float) -> None:
    try:
        os.link(tmp, out)
    except FileExistsError:
        if out.stat().st_mtime >= since:
            raise DuplicateObject(
                "duplicate SOPInstanceUID: another input of this run has the same identity "
                "and was written already"
            ) from None
        os.replace(tmp, out)  # left by an earlier run: replace it
        return
    os.unlink(tmp)


def _split_at_pixels(ds: Dataset) -> tuple[Dataset, Dataset | None]:
    """Elements that sort after the pixel data are written after the copied pixel bytes."""
    late = [t for t in ds.keys() if t > 0x7FE00010 or t >> 16 == _PIXEL_GROUP]
    if not late:
        return ds, None
    head = Dataset()
    head._parent_encoding = ds._parent_encoding  # type: ignore[attr-defined]
    tail = Dataset()
    for tag in ds.keys():
        if tag >> 16 == _PIXEL_GROUP:
            continue  # the pixel group is written by the caller
        # as read: item assignment converts a private element whose creator is present
        (tail if tag > 0x7FE00010 else head)._dict[tag] = ds.get_item(tag)
    head.set_original_encoding(*ds.original_encoding, ds.original_character_set)
    tail.set_original_encoding(*ds.original_encoding, ds.original_character_set)
    return head, tail


def _write_deflated(fh, ds: Dataset) -> None:
    import zlib

    fp = DicomBytesIO()
    fp.is_implicit_VR = False
    fp.is_little_endian = True
    write_dataset(fp, ds)
    comp = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
    fh.write(comp.compress(fp.getvalue()) + comp.flush())


def _copy_range(src: Path, dst_fd: int, offset: int, count: int) -> None:
    with open(src, "rb") as sfh:
        copy_range(sfh, dst_fd, offset, count, src.name)


def copy_range(sfh: BinaryIO, dst_fd: int, offset: int, count: int, name: str) -> None:
    """Copy ``count`` bytes at ``offset`` of the open file ``sfh`` to ``dst_fd``: in the
    kernel (``copy_file_range``), or read and written where that is not possible."""
    sfd = sfh.fileno()
    while count > 0:
        try:
            n = os.copy_file_range(sfd, dst_fd, count, offset)
        except OSError:
            n = 0
        if n == 0:  # fall back to a buffered copy (other filesystems, old kernels)
            sfh.seek(offset)
            while count > 0:
                chunk = sfh.read(min(count, 1 << 20))
                if not chunk:
                    raise InvalidDicom(f"{name}: file shrank while reading")
                os.write(dst_fd, chunk)
                count -= len(chunk)
                offset += len(chunk)
            return
        count -= n
        offset += n


def write_copy_atomic(
    out: Path, head: bytes, src: BinaryIO, offset: int, count: int, name: str,
    *, exclusive_since: float | None = None,
) -> None:
    """Write ``head`` then ``count`` bytes of ``src`` from ``offset`` to ``out``, atomically
    and exclusively like :func:`write_atomic` (the header fast path's writer)."""
    with _atomic(Path(out), exclusive_since) as fh:
        reserve(fh.fileno(), len(head) + count)
        fh.write(head)
        if count:
            fh.flush()
            copy_range(src, fh.fileno(), offset, count, name)


__all__ = [
    "DicomFile", "DuplicateObject", "bare_header_is_whole", "copy_range", "load_pixel_group", "read_header",
    "write_atomic", "write_copy_atomic",
]
