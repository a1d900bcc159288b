"""Render the version of one stored object that a level allows: pure bytes in, bytes out.

The archive holds the de-identified object and, apart, its identity delta; which of the two
a reader sees, and how, is decided here from the :class:`~safepacs.render.levels.Level`
the server chose (never from the request).  No files, no database, no clock: the caller
passes the project key, the issuance serial, the watermark key and the time in a
:class:`RenderContext`, so the same inputs always give the same output (but for ``fresh``
UIDs, which come from the context's salt).

Identifiers are re-keyed with HMAC under a per-project key: a project always gets the same
pseudonym and UIDs for the same stored object, two projects never share one, and neither
can be turned back into the archive's own without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pydicom
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, UID_dictionary

from safepacs.deid.actions import DUMMY_DATE, shift_date
from safepacs.deid.burnedin import burned_in_risk
from safepacs.deid.delta import IdentityDelta, LoadedDelta
from safepacs.deid.keys import Keys
from safepacs.deid.options import CLEAN_PIXEL_DATA_CODE, Options
from safepacs.deid.profile import load_profile
from safepacs.errors import SafepacsError
from safepacs.render.levels import Level

#: Private block that carries the issuance in objects delivered with ``private_mark``.
PRIVATE_GROUP = 0x0099
PRIVATE_CREATOR = "SAFEPACS ISSUANCE"
_PIXEL_GROUP = 0x7FE0
_IMPLEMENTATION_CLASS_UID = 0x00020012
_PSEUDONYM = re.compile(r"^SP[A-Z2-7]{16}$")  # the archive's PatientID pseudonyms
_LONGITUDINAL = 0x00280303
_PATIENT_ID = 0x00100020
_PATIENT_NAME = 0x00100010
_METHOD = 0x00120063


class RenderError(SafepacsError):
    """The object cannot be rendered at this level safely (no PHI in the message)."""


class Unmarkable(RenderError):
    """The pixels cannot carry the forensic watermark (one-bit masks, undecodable or
    undescribed pixel data): a level with a private mark is issued with that mark alone."""


@dataclass(frozen=True)
class RenderContext:
    """What rendering needs besides the object: keys, the issued copy, the time.

    ``project_key``: 32 bytes from :func:`project_key` (levels with project rules).
    ``serial``: the issuance serial (watermark, private mark).  ``request_salt``: keys the
    ``fresh`` UIDs; random by default (nothing links across requests), a per-grant value
    keeps them stable for one grant.
    """

    project_key: bytes | None = None
    serial: int | None = None
    watermark_key: bytes | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    request_salt: bytes = field(default_factory=lambda: os.urandom(32))


# --- identifiers ---------------------------------------------------------------------------
def project_key(site_secret: bytes, project: str) -> bytes:
    """A project's own 32-byte key, derived from the site secret and the project code."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"safepacs render project v1\x00" + project.encode("utf-8")).derive(site_secret)


def project_uid(project_key: bytes, uid: str) -> str:
    """The project's ``2.25.`` UID for a stored UID (one-way, stable, unique per project)."""
    return Keys(project_key).uid(uid)


def project_pseudonym(project_key: bytes, pseudonym: str) -> str:
    """The project's patient pseudonym for the archive's (``PR`` + 16 base32 characters)."""
    return Keys(project_key).pseudonym("project-patient", pseudonym, prefix="PR")


def project_date_offset(project_key: bytes, pseudonym: str) -> int:
    """Days the project's dates of this patient lie before the original ones."""
    return Keys(project_key).date_offset_days("project-dates:" + pseudonym)


def _fresh_key(ctx: RenderContext) -> bytes:
    return hmac.new(ctx.request_salt, b"safepacs fresh uids", hashlib.sha256).digest()


# --- entry points --------------------------------------------------------------------------
def render_instance(stored: bytes, delta: bytes | None, level: Level, ctx: RenderContext) -> bytes:
    """Part 10 bytes of the stored object as ``level`` allows.

    ``delta`` is the plaintext identity delta (as :meth:`IdentityDelta.to_bytes` writes
    it); it is needed only when ``level.needs_delta``.  Raises :class:`RenderError` when the
    level cannot be honoured (missing key, delta or serial; pixels not known to be clean).
    """
    if _is_pass_through(level):
        return stored
    _check_context(level, ctx, delta)
    try:
        return _render(_read(stored), delta, level, ctx)
    except SafepacsError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed values surface late; never echo them
        raise RenderError(f"object cannot be rendered at level {level.name} ({exc.__class__.__name__})") from None


def _render(ds: Dataset, delta: bytes | None, level: Level, ctx: RenderContext) -> bytes:
    loaded = IdentityDelta.from_bytes(delta) if delta is not None and level.needs_delta else None
    if level.header == "original":
        assert loaded is not None
        ds = _restore(ds, loaded)
    else:
        _require_clean(ds)
        original = loaded.apply(_header_only(ds)) if loaded is not None else None
        ds = _transform_header(ds, original, level, ctx)
    if level.watermark:
        mark_pixels(ds, ctx.serial, ctx.watermark_key)  # type: ignore[arg-type]
    if level.private_mark and ctx.serial is not None and ctx.watermark_key is not None:
        add_private_mark(ds, ctx.serial, ctx.watermark_key, ctx.now)
    return _write(ds)


def render_query_result(ds: Dataset, level: Level, ctx: RenderContext) -> Dataset:
    """A QIDO/C-FIND result dataset as ``level`` shows it (a new dataset; ``ds`` unchanged).

    Results hold de-identified index values, so ``project``/``year`` dates, which need the
    original dates, are emptied here; UIDs and pseudonyms are re-keyed as for instances.
    An ``original`` header level gets the result unchanged (identity search is the index's).
    """
    import copy

    out = copy.deepcopy(ds)
    if level.header == "original" or _is_pass_through(level):
        return out
    _check_context(level, ctx, b"", marking=False)  # a result row carries no watermark
    return _transform_header(out, None, level, ctx, query=True)


def _is_pass_through(level: Level) -> bool:
    return (level.header == "deidentified" and level.uids == "stored" and level.dates == "stored"
            and level.keep is None and not level.watermark and not level.private_mark)


def _check_context(level: Level, ctx: RenderContext, delta: bytes | None, *, marking: bool = True) -> None:
    if level.needs_project and (ctx.project_key is None or len(ctx.project_key) != 32):
        raise RenderError(f"level {level.name} needs a 32-byte project key")
    if level.header == "original" and delta is None:
        raise RenderError(f"level {level.name} needs the identity delta")
    if marking and level.watermark and (ctx.serial is None or not ctx.watermark_key):
        raise RenderError(f"level {level.name} is watermarked: an issuance serial and key are needed")


# --- reading and writing -------------------------------------------------------------------
def _read(data: bytes) -> Dataset:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # elements stay raw until touched: untouched ones are written back byte for byte
            ds = pydicom.dcmread(io.BytesIO(data), force=False)
    except Exception as exc:  # noqa: BLE001 - never echo values
        raise RenderError(f"stored object cannot be read ({exc.__class__.__name__})") from None
    return ds


def _write(ds: Dataset) -> bytes:
    fp = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(fp, enforce_file_format=True)
    return fp.getvalue()


def _header_only(ds: Dataset) -> Dataset:
    """A shallow dataset without pixel data, so applying the delta copies no pixels."""
    out = Dataset()
    for elem in ds:
        if elem.tag >> 16 != _PIXEL_GROUP:
            out.add(elem)
    out.file_meta = ds.file_meta
    out.set_original_encoding(ds.is_implicit_VR, ds.is_little_endian, ds._character_set)
    return out


# --- identified ----------------------------------------------------------------------------
def _restore(ds: Dataset, delta: LoadedDelta) -> Dataset:
    """The original object: header element by element, pixels bit for bit."""
    restored = delta.apply(ds)
    if delta.pixels is None:
        return restored
    if delta.pixels.group is not None:
        # compressed original: its pixel-group elements, byte for byte
        for tag in [t for t in restored.keys() if t >> 16 == _PIXEL_GROUP]:
            del restored[tag]
        tsuid = restored.file_meta.TransferSyntaxUID
        group = read_dataset(io.BytesIO(delta.pixels.group), tsuid == ImplicitVRLittleEndian,
                             tsuid != ExplicitVRBigEndian)
        for elem in group:
            restored.add(elem)
        return restored
    from safepacs.deid.pixels.clean import restore_pixels

    restore_pixels(restored, delta.pixels)
    return restored


# --- de-identified headers -----------------------------------------------------------------
def _require_clean(ds: Dataset) -> None:
    """Serve de-identified pixels only when the archive cleaned them or they carry no risk."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return
    codes = [str(item.get("CodeValue", "")) for item in ds.get("DeidentificationMethodCodeSequence", [])]
    if CLEAN_PIXEL_DATA_CODE[0] in codes or burned_in_risk(ds) is None:
        return
    raise RenderError("stored pixels are not known to be free of burned-in identity")


def _transform_header(ds: Dataset, original: Dataset | None, level: Level, ctx: RenderContext,
                      *, query: bool = False) -> Dataset:
    if level.keep is not None:
        ds = _minimise(ds, level, query=query)
    if level.dates != "stored":
        _dates(ds, original, level, ctx)
    remap = _uid_mapper(level, ctx)
    if remap is not None:
        _rekey(ds, remap, _pseudonym_mapper(level, ctx))
    return ds


def _minimise(ds: Dataset, level: Level, *, query: bool) -> Dataset:
    keep, empty = level.keep_tags, level.empty_tags
    out = Dataset()
    for elem in ds:
        if int(elem.tag) in keep:
            out.add(elem)
    for tag in empty:
        if tag not in out:
            from pydicom.datadict import dictionary_VR

            out.add_new(tag, dictionary_VR(tag), None)
    if query:
        for tag in (0x00080052, 0x00080005):  # QueryRetrieveLevel, SpecificCharacterSet
            if tag in ds:
                out.add(ds[tag])
        return out
    out.PatientIdentityRemoved = "YES"
    for tag in (_METHOD, 0x00120064):  # DeidentificationMethod (+ Code Sequence)
        if tag in ds:
            out.add(ds[tag])
    meta = FileMetaDataset()
    for elem in ds.file_meta:
        meta.add(elem)
    out.file_meta = meta
    out.set_original_encoding(ds.is_implicit_VR, ds.is_little_endian, ds._character_set)
    return out


#: tags whose dates Annex E lets a site keep shifted (C under Retain Modified Dates)
def _shiftable() -> Callable[[int], bool]:
    profile = load_profile()
    options = Options(retain_long_modified_dates=True)

    def ok(tag: int) -> bool:
        row = profile.row_for(tag)
        return row is None or row.action(options) in ("C", "K")

    return ok


def _dates(ds: Dataset, original: Dataset | None, level: Level, ctx: RenderContext) -> None:
    """Every DA/DT value of ``ds`` (any depth) as the level's date rule says."""
    rule = level.dates
    if rule in ("project", "year") and original is None:
        rule = "remove"  # the originals are unknown here: drop rather than guess
    offset = 0
    if rule == "project":
        offset = project_date_offset(ctx.project_key, str(ds.get("PatientID", "") or ""))  # type: ignore[arg-type]
    shiftable = _shiftable() if rule == "project" else None
    blank = level.empty_tags

    def visit(node: Dataset, orig: Dataset | None) -> None:
        for elem in node:
            if elem.VR == "SQ":
                osq = orig.get(elem.tag) if orig is not None and elem.tag in orig else None
                for i, item in enumerate(elem.value):
                    oitem = osq.value[i] if osq is not None and osq.VR == "SQ" and i < len(osq.value) else None
                    visit(item, oitem)
                continue
            if elem.VR not in ("DA", "DT"):
                continue
            if node is ds and int(elem.tag) in blank:
                elem.value = ""  # written empty by the level: no date comes back into it
                continue
            source = orig.get(elem.tag) if orig is not None and elem.tag in orig else None
            value = str(source.value or "") if source is not None and source.VM == 1 else ""
            elem.value = _date_value(rule, elem.VR, value, offset,
                                     shiftable is None or shiftable(int(elem.tag)))

    visit(ds, original)
    if _LONGITUDINAL in ds or rule != "remove":
        ds.LongitudinalTemporalInformationModified = "MODIFIED" if rule == "project" else "REMOVED"


def _date_value(rule: str, vr: str, value: str, offset: int, shiftable: bool) -> str:
    value = value.strip()
    if rule == "remove" or not value or not value[:4].isdigit():
        return ""
    if rule == "year":
        return value[:4] + "0101" if vr == "DA" else value[:4]
    if not shiftable:
        return ""
    # a DT keeps only its shifted date: the time of day is identifying too (the stored
    # TM values are already dummies)
    shifted = shift_date(value[:8], offset) if len(value) >= 8 else ""
    return "" if shifted == DUMMY_DATE else shifted


def _uid_mapper(level: Level, ctx: RenderContext) -> Callable[[str], str] | None:
    if level.uids == "project":
        key = ctx.project_key
        assert key is not None
        return lambda uid: project_uid(key, uid)
    if level.uids == "fresh":
        fresh = Keys(_fresh_key(ctx))
        return fresh.uid
    return None


def _pseudonym_mapper(level: Level, ctx: RenderContext) -> Callable[[str], str]:
    if level.uids == "project":
        key = ctx.project_key
        assert key is not None
        return lambda p: project_pseudonym(key, p)
    fresh = Keys(_fresh_key(ctx))
    return lambda p: fresh.pseudonym("fresh-patient", p, prefix="AN")


def _rekey(ds: Dataset, uid: Callable[[str], str], pseudonym: Callable[[str], str]) -> None:
    """Re-key every non-registry UID and every archive pseudonym, at every depth."""

    def visit(node: Dataset, meta: bool = False) -> None:
        for elem in node:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif elem.VR == "UI":
                if meta and elem.tag == _IMPLEMENTATION_CLASS_UID:
                    continue
                elem.value = _map_values(elem.value, lambda v: v if v in UID_dictionary else uid(v))
            elif elem.VR in ("LO", "SH", "PN", "LT", "ST", "UT", "UC", "CS") and elem.value:
                elem.value = _map_values(elem.value, lambda v: pseudonym(v) if _PSEUDONYM.match(v) else v)

    visit(ds)
    if getattr(ds, "file_meta", None) is not None:
        visit(ds.file_meta, meta=True)
    pid = str(ds.get("PatientID", "") or "")
    if _PATIENT_NAME in ds and pid:
        ds.PatientName = pid  # a research copy is named by its pseudonym, nothing else


def _map_values(value: object, fn: Callable[[str], str]) -> object:
    if value is None or value == "":
        return value
    if isinstance(value, list | tuple | MultiValue):
        return [fn(str(v)) for v in value]
    if isinstance(value, bytes):
        return value
    return fn(str(value))


# --- marks ---------------------------------------------------------------------------------
def mark_pixels(ds: Dataset, serial: int, key: bytes) -> None:
    """Embed the forensic watermark into every frame of ``ds``'s pixel data (in place)."""
    if "PixelData" not in ds:
        return
    from safepacs.deid.pixels.encode import write_back
    from safepacs.deid.pixels.frames import PixelError, stored_frames
    from safepacs.render.watermark import embed

    try:
        stored = stored_frames(ds)
        if str(stored.photometric) == "PALETTE COLOR":
            stored = _palette_as_rgb(ds, stored)
    except PixelError as exc:
        raise Unmarkable(f"pixel data cannot be watermarked ({exc})") from None
    lay = stored.layout
    bits = int(ds.get("BitsStored", lay.bits_allocated) or lay.bits_allocated)
    bounds = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if lay.signed else (0, (1 << bits) - 1))
    marked = embed(stored.array, serial, key, bounds=bounds)
    if stored.buffer is not None:
        stored.array[...] = marked
    else:
        stored = type(stored)(marked, None, stored.photometric, lay)
    write_back(ds, stored)


#: the palette module, gone once the copy is RGB
_PALETTE_TAGS = (0x00281101, 0x00281102, 0x00281103, 0x00281104, 0x00281199, 0x00281201, 0x00281202,
                 0x00281203, 0x00281204, 0x00281221, 0x00281222, 0x00281223, 0x00281224)


def _palette_as_rgb(ds: Dataset, stored: Any) -> Any:
    """A palette-colour copy turned into the RGB it shows (in ``ds`` and as the returned
    stored frames): a mark added to palette indices would jump between unrelated colours,
    in RGB it is the same faint change as in any colour image."""
    from pydicom.pixels import apply_color_lut

    from safepacs.deid.pixels.frames import Layout, PixelError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rgb = np.ascontiguousarray(apply_color_lut(stored.array[..., 0], ds))
    except Exception as exc:  # noqa: BLE001 - a broken palette is this object's problem
        raise PixelError(f"palette colour lookup tables are unusable ({exc.__class__.__name__})") from None
    if rgb.dtype not in (np.uint8, np.uint16):
        raise PixelError("palette colour lookup tables are unusable (entry size)")
    lay = stored.layout
    bits = rgb.dtype.itemsize * 8
    for tag in _PALETTE_TAGS:
        if tag in ds:
            del ds[tag]
    ds.PhotometricInterpretation = "RGB"
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    rgb_lay = Layout(lay.rows, lay.columns, lay.frames, 3, bits, bits, False, 0, "RGB", lay.transfer_syntax)
    if not lay.native:
        return type(stored)(rgb, None, "RGB", rgb_lay)  # re-encoded (RLE) after the mark
    order = ">" if lay.transfer_syntax == ExplicitVRBigEndian else "<"
    buffer = bytearray(rgb.astype(rgb.dtype.newbyteorder(order)).tobytes())
    array = np.frombuffer(buffer, dtype=rgb.dtype.newbyteorder(order)).reshape(rgb.shape)
    if "PixelData" in ds and bits == 16:
        ds["PixelData"].VR = "OW"
    return type(stored)(array, buffer, "RGB", rgb_lay)


def _private_mac(key: bytes, serial: int, sop: str) -> bytes:
    msg = b"safepacs-private-mark-v1\x00" + serial.to_bytes(8, "big") + sop.encode("ascii", "replace")
    return hmac.new(key, msg, hashlib.sha256).digest()[:16]


def add_private_mark(ds: Dataset, serial: int, key: bytes, now: datetime) -> None:
    """The issuance serial and time in a private block, with a keyed MAC so a forged or
    copied block is recognised as such."""
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x00, "UL", serial)
    block.add_new(0x01, "DT", now.astimezone(UTC).strftime("%Y%m%d%H%M%S"))
    block.add_new(0x02, "OB", _private_mac(key, serial, str(ds.get("SOPInstanceUID", ""))))


def read_private_mark(ds: Dataset, key: bytes) -> int | None:
    """The serial of a valid private mark in ``ds``, or None (absent, or MAC wrong)."""
    try:
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
        raw = block[0x00].value
        # implicit VR files read private elements back as raw bytes (VR unknown)
        serial = (int.from_bytes(raw[:4], "little" if ds.is_little_endian is not False else "big")
                  if isinstance(raw, bytes) else int(raw))
        mac = bytes(block[0x02].value)
    except (KeyError, ValueError, TypeError):
        return None
    want = _private_mac(key, serial, str(ds.get("SOPInstanceUID", "")))
    return serial if hmac.compare_digest(mac, want) else None


def pixel_array(ds: Dataset) -> np.ndarray:
    """Stored values of the first frame (for tracing a DICOM copy)."""
    from safepacs.deid.pixels.frames import stored_frames

    return stored_frames(ds).array[0]


__all__ = [
    "PRIVATE_CREATOR",
    "RenderContext",
    "RenderError",
    "add_private_mark",
    "mark_pixels",
    "project_key",
    "project_pseudonym",
    "project_uid",
    "read_private_mark",
    "render_instance",
    "render_query_result",
]

# The archive resolves a reader's identifiers back to stored ones with the same mappings.
uid_mapper = _uid_mapper
pseudonym_mapper = _pseudonym_mapper
is_pass_through = _is_pass_through
