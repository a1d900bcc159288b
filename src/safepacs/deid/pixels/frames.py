"""Pixel data as arrays: the stored values of every frame, and an 8-bit grey view of one.

Two representations, two jobs.  The *stored* array (frames, rows, columns, samples) is what
redaction writes into: for uncompressed data it is a view on a copy of the PixelData bytes,
so patches are exact bytes and nothing is converted; for compressed data it is the decoded
array that is re-encoded losslessly afterwards.  The *display* frame (rows, columns, uint8,
0 black .. 255 white) is what the text detector reads: windowed as a viewer would show it,
MONOCHROME1 inverted, colour and palette turned into luminance (a dark colour frame into
each pixel's brightest channel, so red or blue type on black stays as bright as it looks).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRBigEndian

from safepacs.dicom.encaps import without_unusable_offsets
from safepacs.dicom.image import frame_count, pixel_keyword
from safepacs.dicom.panics import panics_as_errors
from safepacs.errors import SafepacsError


class PixelError(SafepacsError):
    """Pixel data that cannot be cleaned safely (corrupt, unsupported, undecodable)."""


@dataclass(frozen=True)
class Layout:
    """The Image Pixel module attributes that say how to read the pixel bytes."""

    rows: int
    columns: int
    frames: int
    samples: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    planar: int
    photometric: str
    transfer_syntax: UID

    @property
    def native(self) -> bool:
        return not self.transfer_syntax.is_compressed


def layout(ds: Dataset) -> Layout:
    """Read and check the pixel description; raise :class:`PixelError` when it is unusable."""
    try:
        rows = int(ds.Rows)
        columns = int(ds.Columns)
        frames = frame_count(ds)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits_allocated = int(ds.BitsAllocated)
        bits_stored = int(ds.get("BitsStored", bits_allocated) or bits_allocated)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        planar = int(ds.get("PlanarConfiguration", 0) or 0)
        photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
        tsuid = UID(str(ds.file_meta.TransferSyntaxUID))
    except (AttributeError, KeyError, TypeError, ValueError):
        raise PixelError("image pixel description is missing or malformed") from None
    if not tsuid.is_transfer_syntax:
        raise PixelError("transfer syntax is not a known DICOM transfer syntax")
    if rows <= 0 or columns <= 0 or frames is None or samples not in (1, 3):
        raise PixelError("image pixel description is invalid (rows, columns, frames or samples)")
    if bits_allocated not in (8, 16, 32) or not 0 < bits_stored <= bits_allocated:
        raise PixelError(f"BitsAllocated {bits_allocated} is not supported for pixel cleaning")
    return Layout(rows, columns, frames, samples, bits_allocated, bits_stored, signed,
                  planar, photometric, tsuid)


@dataclass
class Stored:
    """Stored pixel values of every frame, shaped (frames, rows, columns, samples).

    ``buffer`` is the writable PixelData copy that ``array`` views (uncompressed data), or
    None when ``array`` was decoded and must be re-encoded.  ``photometric`` is the
    interpretation of ``array`` (decoding turns YBR into RGB).
    """

    array: np.ndarray
    buffer: bytearray | None
    photometric: str
    layout: Layout

    def frame(self, index: int) -> Stored:
        """Frame ``index`` alone, as a one-frame view of this array."""
        return Stored(self.array[index : index + 1], None, self.photometric, self.layout)


#: why a Parametric Map (Float or Double Float Pixel Data, PS3.3 C.7.6.24-25) is refused
_FLOAT_PIXELS = "float pixel data (a Parametric Map's values) is not supported for pixel cleaning"


def stored_frames(ds: Dataset) -> Stored:
    """The stored values of every frame of ``ds`` (whose PixelData must be loaded)."""
    keyword = pixel_keyword(ds)
    if keyword is None:
        raise PixelError("no pixel data to clean")
    if keyword != "PixelData":  # before the layout, whose BitsAllocated 64 would be the reason
        raise PixelError(_FLOAT_PIXELS)
    lay = layout(ds)
    if lay.native:
        return _native(ds, lay)
    return _decoded(ds, lay)


def _native(ds: Dataset, lay: Layout) -> Stored:
    if lay.photometric == "YBR_FULL_422" and lay.samples == 3:
        # Two pixels share one chroma pair (some ultrasound devices write this uncompressed):
        # no box can be painted in place, so it is decoded and re-encoded like compressed data.
        return _decoded(ds, lay)
    if lay.photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "PALETTE COLOR"):
        raise PixelError(
            f"uncompressed {lay.photometric or 'unknown'} pixel data is not supported for cleaning"
        )
    kind = ("i" if lay.signed else "u") + str(lay.bits_allocated // 8)
    order = ">" if lay.transfer_syntax == ExplicitVRBigEndian else "<"
    dtype = np.dtype(order + kind)
    count = lay.frames * lay.rows * lay.columns * lay.samples
    buffer = bytearray(ds.PixelData)
    if len(buffer) < count * dtype.itemsize:
        raise PixelError(
            f"pixel data is shorter ({len(buffer)} bytes) than the image description needs "
            f"({count * dtype.itemsize} bytes)"
        )
    flat = np.frombuffer(buffer, dtype=dtype, count=count)
    if lay.samples == 3 and lay.planar == 1:
        array = flat.reshape(lay.frames, 3, lay.rows, lay.columns).transpose(0, 2, 3, 1)
    else:
        array = flat.reshape(lay.frames, lay.rows, lay.columns, lay.samples)
    return Stored(array, buffer, lay.photometric, lay)


#: decoding plugins, in the order tried.  GDCM only when nothing else can decode the
#: syntax: on some damaged JPEG data it throws a C++ exception through its C API, and that
#: aborts the whole process (a server, a batch run), which no ``except`` can catch.
_PLUGIN_ORDER = ("pylibjpeg", "pydicom", "pillow", "pyjpegls")


def decode(ds: Dataset, transfer_syntax: str | None = None, *, index: int | None = None,
           as_rgb: bool = True) -> tuple[np.ndarray, dict]:
    """All frames of ``ds`` (or the 0-based frame ``index``) decoded, colour as RGB unless
    ``as_rgb`` is False, and the decoder's notes (the photometric interpretation of what it
    returns among them), like ``ds.pixel_array`` but trying only plugins that fail as
    exceptions (see above).

    Several frames are decoded one at a time into one array: decoded all at once, pydicom
    turns YBR colour into RGB over the whole cine in floating point, so a 120-frame 640x480
    ultrasound loop peaked at 1 GB (a 500-frame echo would need several) and took twice as
    long; one frame at a time it peaks at the decoded frames plus one frame."""
    decoder, ds, plugins = _decoder(ds, transfer_syntax)
    failure = "no plugin"
    with _quiet_decoders():
        for plugin in plugins:
            try:
                with warnings.catch_warnings(), panics_as_errors():
                    warnings.simplefilter("ignore")
                    frames = frame_count(ds) if index is None else None
                    if frames is not None and frames > 1:
                        return _each_frame(decoder, ds, frames, as_rgb=as_rgb, plugin=plugin)
                    return decoder.as_array(ds, index=index, as_rgb=as_rgb, decoding_plugin=plugin)
            except Exception as exc:  # noqa: BLE001 - decoders raise many types; never echo values
                failure = exc.__class__.__name__
    raise PixelError(f"compressed pixel data cannot be decoded ({failure})")


def decoded_frames(ds: Dataset, lay: Layout) -> Iterator[tuple[int, Stored]]:
    """Each frame of compressed ``ds`` decoded alone, as a one-frame :class:`Stored`, for a
    pass that needs one frame at a time: a cine is then cleaned without its decoded loop
    held whole (a 300-frame 1024x768 colour loop is 700 MB decoded).

    When a decoding plugin fails midway, the next one starts again from frame 0, so a
    consumer files each frame by its number.  Raises :class:`PixelError` when no plugin
    decodes every frame, or the frames do not match ``lay``.
    """
    decoder, ds, plugins = _decoder(ds, lay.transfer_syntax)
    failure = "no plugin"
    with _quiet_decoders():
        for plugin in plugins:
            count = 0
            try:
                with warnings.catch_warnings(), panics_as_errors():
                    warnings.simplefilter("ignore")
                    for frame, notes in decoder.iter_array(ds, as_rgb=True, decoding_plugin=plugin):
                        if count == lay.frames:
                            break  # more frames than declared: as in :func:`_each_frame`
                        yield count, _one_frame(frame, notes, lay)
                        count += 1
            except PixelError:
                raise
            except Exception as exc:  # noqa: BLE001 - decoders raise many types; never echo values
                failure = exc.__class__.__name__
                continue
            if count < lay.frames:
                raise PixelError("compressed pixel data holds fewer frames than NumberOfFrames")
            return
    raise PixelError(f"compressed pixel data cannot be decoded ({failure})")


def decoded_frame(ds: Dataset, lay: Layout, index: int) -> Stored:
    """Frame ``index`` of compressed ``ds`` decoded alone (see :func:`decoded_frames`)."""
    array, notes = decode(ds, lay.transfer_syntax, index=index)
    return _one_frame(array, notes, lay)


def _one_frame(array: np.ndarray, notes: dict, lay: Layout) -> Stored:
    expected = (lay.rows, lay.columns) if lay.samples == 1 else (lay.rows, lay.columns, 3)
    if array.shape != expected:
        raise PixelError("decoded pixel data does not match the image description")
    if not array.flags.writeable:
        array = array.copy()
    photometric = str(notes.get("photometric_interpretation", lay.photometric))
    return Stored(array.reshape(1, lay.rows, lay.columns, lay.samples), None, photometric, lay)


def _decoder(ds: Dataset, transfer_syntax: str | None):  # type: ignore[no-untyped-def]
    """pydicom's decoder for ``ds``, ``ds`` itself (or a copy with usable offsets) and the
    plugins to try, in order."""
    from pydicom.pixels import get_decoder

    tsuid = transfer_syntax or str(ds.file_meta.TransferSyntaxUID)
    ds = _with_usable_offsets(ds, tsuid)
    try:
        decoder = get_decoder(tsuid)
    except NotImplementedError:
        raise PixelError(f"transfer syntax {tsuid} cannot be decoded: no decoder") from None
    if not decoder.is_available:
        raise PixelError(f"transfer syntax {tsuid} cannot be decoded: no plugin installed")
    available = list(decoder.available_plugins)
    plugins = [p for p in _PLUGIN_ORDER if p in available]
    return decoder, ds, plugins or available or [""]  # native data: no plugins, pydicom's own


@contextmanager
def _quiet_decoders() -> Iterator[None]:
    """pydicom's decoders log a traceback for each plugin that fails."""
    logger = logging.getLogger("pydicom")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


def _each_frame(decoder, ds: Dataset, frames: int, *, as_rgb: bool,  # type: ignore[no-untyped-def]
                plugin: str) -> tuple[np.ndarray, dict]:
    """``frames`` frames decoded one by one into one array (see :func:`decode`)."""
    array: np.ndarray | None = None
    first: dict = {}
    count = 0
    for count, (frame, notes) in enumerate(
        decoder.iter_array(ds, as_rgb=as_rgb, decoding_plugin=plugin), start=1
    ):
        if count > frames:
            break  # more frames than declared: as_array would not have returned them either
        if array is None:
            array = np.empty((frames, *frame.shape), dtype=frame.dtype)
            first = notes
        elif frame.shape != array.shape[1:]:
            raise ValueError("frames of different sizes")
        array[count - 1] = frame
    if array is None or count < frames:
        raise ValueError("fewer frames than NumberOfFrames")
    return array, {**first, "number_of_frames": frames}


#: what a decoder reads besides the pixel data itself (PS3.3 C.7.6.3, C.7.6.6)
_PIXEL_DESCRIPTION = ("SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration",
                      "NumberOfFrames", "Rows", "Columns", "BitsAllocated", "BitsStored",
                      "HighBit", "PixelRepresentation")


def _with_usable_offsets(ds: Dataset, tsuid: str) -> Dataset:
    """``ds``, or a copy of its pixel description and data read without a Basic Offset Table
    that does not fit the fragments (:mod:`safepacs.dicom.encaps`); ``ds`` is not changed."""
    if not UID(tsuid).is_encapsulated or "PixelData" not in ds:
        return ds
    frames = frame_count(ds)
    if frames is None:
        return ds  # the decoder refuses it with its own reason
    data = without_unusable_offsets(ds.PixelData, frames)
    if data is None:
        return ds
    copy = Dataset()
    copy.file_meta = FileMetaDataset()
    copy.file_meta.TransferSyntaxUID = UID(tsuid)
    for keyword in _PIXEL_DESCRIPTION:
        if keyword in ds:
            copy[keyword] = ds[keyword]
    copy.PixelData = data
    copy["PixelData"].VR = ds["PixelData"].VR
    return copy


def _decoded(ds: Dataset, lay: Layout) -> Stored:
    array, meta = decode(ds, lay.transfer_syntax)
    photometric = str(meta.get("photometric_interpretation", lay.photometric))
    expected = (lay.rows, lay.columns) if lay.samples == 1 else (lay.rows, lay.columns, 3)
    if lay.frames > 1:
        expected = (lay.frames, *expected)
    if array.shape != expected:
        raise PixelError("decoded pixel data does not match the image description")
    if not array.flags.writeable:
        array = array.copy()
    shaped = array.reshape(lay.frames, lay.rows, lay.columns, lay.samples)
    return Stored(shaped, None, photometric, lay)


# --- display ------------------------------------------------------------------------
def display_frame(stored: Stored, index: int, ds: Dataset) -> np.ndarray:
    """Frame ``index`` as a 2-D uint8 grey image, 0 black, as a viewer would show it."""
    frame = stored.array[index]
    photometric = stored.photometric
    if stored.layout.samples == 3:
        if photometric.startswith("YBR"):
            return _to_uint8(frame[..., 0], stored.layout.bits_allocated)  # Y is luminance
        return _colour_grey(frame, stored.layout.bits_allocated)
    plane = frame[..., 0]
    if stored.layout.bits_allocated > 16:
        return _float_display(plane, ds, stored.layout, photometric)
    index = _lut_index(plane, stored.layout)
    if photometric == "PALETTE COLOR":
        luma, brightest = _palette_greys(ds, stored.layout)
        grey = luma[index]
        return brightest[index] if _dark(grey) else grey
    return display_lut(ds, stored.layout, photometric, index)[index]


def darkest_value(stored: Stored, index: int, ds: Dataset) -> np.ndarray:
    """The stored value (per sample) that a viewer shows darkest in frame ``index``: the fill.

    For greyscale and palette images it is a value present in the frame (its background),
    so MONOCHROME1 fills with its maximum and signed CT with its air value.
    """
    lay = stored.layout
    dtype = stored.array.dtype
    if lay.samples == 3:
        if stored.photometric.startswith("YBR"):
            mid = 1 << (lay.bits_stored - 1)
            return np.array([0, mid, mid], dtype=dtype)
        return np.zeros(3, dtype=dtype)
    plane = stored.array[index, ..., 0]
    if stored.photometric in ("MONOCHROME1", "MONOCHROME2"):
        # rescale and window are monotonic: the darkest is the lowest (MONOCHROME2) or
        # highest (MONOCHROME1) value, when every value lies within BitsStored
        low, high = plane.min(), plane.max()
        top = 1 << (lay.bits_stored - (1 if lay.signed else 0))
        if (-top if lay.signed else 0) <= int(low) and int(high) < top:
            rising = (_first_number(ds, "RescaleSlope", 1.0) or 1.0) > 0
            want_low = rising == (stored.photometric == "MONOCHROME2")
            return np.array([low if want_low else high], dtype=dtype)
    if lay.bits_allocated > 16:
        shown = _float_display(plane, ds, lay, stored.photometric)
        y, x = np.unravel_index(int(np.argmin(shown)), shown.shape)
        return np.array([plane[y, x]], dtype=dtype)
    index_plane = _lut_index(plane, lay)
    present = np.bincount(index_plane.ravel(), minlength=1 << lay.bits_allocated) > 0
    lut = display_lut(ds, lay, stored.photometric, index_plane)
    candidates = np.flatnonzero(present)
    best = int(candidates[np.argmin(lut[candidates])])
    unsigned = _unsigned(lay)
    same_bits = np.array([best], dtype=unsigned).view(dtype.newbyteorder("="))
    return same_bits.astype(dtype)


def _unsigned(lay: Layout) -> np.dtype:
    return np.dtype(np.uint16 if lay.bits_allocated == 16 else np.uint8)


def _lut_index(plane: np.ndarray, lay: Layout) -> np.ndarray:
    """Stored bits as unsigned indexes into a LUT of 2**BitsAllocated entries (no copy
    for native-order data)."""
    if plane.dtype.byteorder == ">":
        plane = plane.astype(plane.dtype.newbyteorder("="))
    unsigned = _unsigned(lay)
    if plane.dtype.itemsize == unsigned.itemsize:
        return plane.view(unsigned)
    return plane.astype(unsigned)


def stored_values(lay: Layout) -> np.ndarray:
    """The pixel value each LUT index means: masked to BitsStored and sign-extended."""
    index = np.arange(1 << lay.bits_allocated, dtype=np.int64)
    mask = (1 << lay.bits_stored) - 1
    values = index & mask
    if lay.signed:
        sign = 1 << (lay.bits_stored - 1)
        values = np.where(values & sign, values - (1 << lay.bits_stored), values)
    return values


def display_lut(
    ds: Dataset, lay: Layout, photometric: str, index_plane: np.ndarray | None = None
) -> np.ndarray:
    """uint8 grey for every possible stored value (2**BitsAllocated entries).

    Modality rescale, then the first VOI window of the header; without a window, the
    range of the values present in ``index_plane`` (min-max), as viewers do.
    """
    if photometric == "PALETTE COLOR":
        return _palette_grey(ds, lay)
    slope = _first_number(ds, "RescaleSlope", 1.0) or 1.0
    intercept = _first_number(ds, "RescaleIntercept", 0.0) or 0.0
    values = stored_values(lay).astype(np.float64) * slope + intercept
    present = None
    windowed = None not in (_first_number(ds, "WindowWidth", None), _first_number(ds, "WindowCenter", None))
    if index_plane is not None and not windowed:
        present = np.bincount(index_plane.ravel(), minlength=1 << lay.bits_allocated) > 0
    return _window(values, ds, photometric, present)


def _window(values: np.ndarray, ds: Dataset, photometric: str, present: np.ndarray | None) -> np.ndarray:
    center = _first_number(ds, "WindowCenter", None)
    width = _first_number(ds, "WindowWidth", None)
    if center is not None and width is not None and width >= 1:
        # PS3.3 C.11.2.1.2.1 linear VOI function
        scaled = ((values - (center - 0.5)) / max(width - 1.0, 1.0) + 0.5)
    else:
        sample = values if present is None else values[present]
        low, high = float(sample.min()), float(sample.max())
        scaled = (values - low) / (high - low if high > low else 1.0)
    out = np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return 255 - out if photometric == "MONOCHROME1" else out


def _float_display(plane: np.ndarray, ds: Dataset, lay: Layout, photometric: str) -> np.ndarray:
    """32-bit data: window directly (no LUT of 2**32 entries)."""
    mask = (1 << lay.bits_stored) - 1
    values = plane.astype(np.int64) & mask
    if lay.signed:
        sign = 1 << (lay.bits_stored - 1)
        values = np.where(values & sign, values - (1 << lay.bits_stored), values)
    slope = _first_number(ds, "RescaleSlope", 1.0) or 1.0
    intercept = _first_number(ds, "RescaleIntercept", 0.0) or 0.0
    return _window(values * slope + intercept, ds, photometric, None)


def _palette_grey(ds: Dataset, lay: Layout) -> np.ndarray:
    """Luminance of each palette entry, for every possible stored index."""
    return _palette_greys(ds, lay)[0]


def _palette_greys(ds: Dataset, lay: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Luminance and brightest channel of each palette entry, for every stored index."""
    from pydicom.pixels import apply_color_lut

    index = (np.arange(1 << lay.bits_allocated) & ((1 << lay.bits_stored) - 1)).astype(
        np.uint16 if lay.bits_allocated > 8 else np.uint8
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rgb = apply_color_lut(index, ds).astype(np.float64)
    except Exception as exc:  # noqa: BLE001 - a broken palette is a per-file error
        raise PixelError(f"palette colour lookup tables are unusable ({exc.__class__.__name__})") from None
    top = float(rgb.max()) or 1.0
    grey = (rgb @ np.array([0.299, 0.587, 0.114])) / top
    brightest = rgb.max(axis=-1) / top
    return tuple(np.clip(g * 255.0 + 0.5, 0, 255).astype(np.uint8) for g in (grey, brightest))


#: Median luma under which a colour or palette frame counts as dark (ultrasound, a
#: screenshot on black).
DARK_FRAME = 128


def _dark(luma: np.ndarray) -> bool:
    """Whether a colour or palette frame, seen as luma, is dark (median under DARK_FRAME)."""
    return float(np.median(luma[::4, ::4])) < DARK_FRAME


def _colour_grey(frame: np.ndarray, bits: int) -> np.ndarray:
    """Grey for the text detector: luma, or on a dark frame each pixel's brightest channel.

    Devices print annotation in saturated colours, and luma ranks them far below how
    they look on black: pure red is 76, blue 29, against 255 for white, so 10 px red or
    blue type on a black panel, anti-aliased, falls under the stroke threshold.  On a
    dark frame the brightest channel shows them as bright as white (grey pixels keep
    their value).  On a light frame (a document, a form) it would wash red or blue text
    out into the white around it, so luma stays.
    """
    luma = _luminance(frame, bits)
    if not _dark(luma):
        return luma
    if frame.dtype == np.uint8:
        return frame.max(axis=-1)
    top = float(frame.max()) or 1.0
    return np.clip(frame.max(axis=-1).astype(np.float32) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)


def _luminance(frame: np.ndarray, bits: int) -> np.ndarray:
    """ITU-R BT.601 luma of an RGB frame, as uint8."""
    if frame.dtype == np.uint8:
        r, g, b = (frame[..., i].astype(np.uint16) for i in range(3))
        return ((r * 77 + g * 150 + b * 29) >> 8).astype(np.uint8)
    rgb = frame.astype(np.float32)
    top = float(rgb.max()) or 1.0
    grey = (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) * (255.0 / top)
    return np.clip(grey + 0.5, 0, 255).astype(np.uint8)


def _to_uint8(plane: np.ndarray, bits: int) -> np.ndarray:
    if plane.dtype == np.uint8:
        return np.ascontiguousarray(plane)
    return (plane.astype(np.float32) * (255.0 / ((1 << bits) - 1))).astype(np.uint8)


def _first_number(ds: Dataset, keyword: str, default: float | None) -> float | None:
    elem = ds.get(keyword)
    if elem is None or elem == "":
        return default
    value = elem[0] if isinstance(elem, list | tuple) or type(elem).__name__ == "MultiValue" else elem
    try:
        return float(value)
    except (TypeError, ValueError):
        return default
