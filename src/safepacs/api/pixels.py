"""Frames and rendered images from a DICOM object (WADO-RS ``/frames`` and ``/rendered``).

Pure functions on a pydicom Dataset.  Native pixel data is sliced by byte offsets without
decoding; encapsulated pixel data yields its compressed frames as stored.  Rendering is
``safepacs.render.display``'s: modality LUT, window (requested, from the header, or the
data range), MONOCHROME1 inverted, PNG or JPEG by Pillow.
"""

from __future__ import annotations

import numpy as np
from pydicom import Dataset
from pydicom.encaps import generate_frames

from safepacs.archive.errors import BadFrame
from safepacs.dicom.encaps import without_unusable_offsets
from safepacs.dicom.image import frame_count, pixel_keyword
from safepacs.index.query import QueryError

_UNSPLITTABLE = "pixel data cannot be split into frames"


def _checked(ds: Dataset, numbers: list[int]) -> tuple[str, int]:
    """The pixel data element's keyword and the frame count, with ``numbers`` checked
    against it: LookupError without pixels or a usable count, :class:`BadFrame` out of range."""
    keyword = pixel_keyword(ds)
    if keyword is None:
        raise LookupError("the instance has no pixel data")
    n = frame_count(ds)
    if n is None:
        raise LookupError(_UNSPLITTABLE)
    for k in numbers:
        if not 1 <= k <= n:
            raise BadFrame("frame number out of range")
    return keyword, n


def frames(ds: Dataset, numbers: list[int]) -> list[bytes]:
    """The bytes of the requested 1-based frames; :class:`BadFrame` if one is out of range,
    LookupError when the object has no pixel data or its pixel description is unusable."""
    keyword, n = _checked(ds, numbers)
    data = ds[keyword].value
    if keyword == "PixelData" and ds.file_meta.TransferSyntaxUID.is_encapsulated:
        data = without_unusable_offsets(data, n) or data  # a table that cannot be right
        try:
            allf = list(generate_frames(data, number_of_frames=n))
        except Exception:  # noqa: BLE001 - malformed fragments; pydicom's messages may quote bytes
            raise LookupError(_UNSPLITTABLE) from None
        if len(allf) < n:
            raise LookupError(_UNSPLITTABLE)
        return [allf[k - 1] for k in numbers]
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        raise LookupError(_UNSPLITTABLE) from None
    if bits == 1:
        return _bit_frames(data, rows * cols * spp, n, numbers)
    size = rows * cols * spp * bits // 8
    if bits % 8 or size <= 0 or len(data) < size * n:
        raise LookupError(_UNSPLITTABLE)
    view = memoryview(data)
    return [bytes(view[(k - 1) * size : k * size]) for k in numbers]


#: colour models whose native layout is one value per sample per pixel, as decoders return
#: them (PS3.3 C.7.6.3.1.2); the subsampled YBR_*_422/420 and the JPEG 2000-only YBR_ICT/RCT
#: have no such native form
_NATIVE_PHOTOMETRIC = {"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "YBR_FULL"}


_CHANGED = ("decoding would change what the header says of the frames (photometric "
            "interpretation or bits): ask for them as stored (transfer-syntax=*)")


class NotDecodable(LookupError):
    """The frames exist but cannot be sent uncompressed as the header describes them."""


def native_frames(ds: Dataset, numbers: list[int]) -> list[bytes]:
    """The requested 1-based frames decoded to native little endian values, laid out as the
    header describes native data (samples interleaved or, with PlanarConfiguration 1, by
    plane), for a client that asked for uncompressed frames of a compressed or big endian
    object.  :class:`BadFrame` for a number out of range, :class:`NotDecodable` when the
    frames cannot be decoded or decoding would change what the header says of them (a
    JPEG ``YBR_FULL_422`` frame decodes to full-resolution colour, a JPEG 2000 ``YBR_ICT``
    one to RGB: the client would read them by the wrong description)."""
    from safepacs.deid.pixels.frames import PixelError, decode

    if _checked(ds, numbers)[0] != "PixelData":
        raise NotDecodable("float pixel data is sent as stored: ask for transfer-syntax=*")
    try:
        bits = int(ds.BitsAllocated)
        planar = int(ds.get("PlanarConfiguration", 0) or 0) == 1
        photometric = str(ds.PhotometricInterpretation).strip().upper()
    except (AttributeError, TypeError, ValueError):
        raise NotDecodable(_UNSPLITTABLE) from None
    if photometric not in _NATIVE_PHOTOMETRIC:  # known from the header: nothing to decode
        raise NotDecodable(_CHANGED)
    out = []
    for k in numbers:
        try:
            arr, notes = decode(ds, index=k - 1, as_rgb=False)
        except PixelError:
            raise NotDecodable("the frames cannot be decoded: ask for them as stored "
                               "(transfer-syntax=*)") from None
        decoded = str(notes.get("photometric_interpretation", photometric)).strip().upper()
        if decoded != photometric or arr.dtype.itemsize * 8 != bits:
            raise NotDecodable(_CHANGED)
        if planar and arr.ndim == 3:
            arr = arr.transpose(2, 0, 1)
        out.append(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes())
    return out


def _bit_frames(data: bytes, pixels: int, n: int, numbers: list[int]) -> list[bytes]:
    """Frames of 1-bit data (segmentations, overlays-as-images): packed without padding
    between frames (PS3.5 8.1.1), so a frame may start inside a byte.  Each is returned
    repacked from its own first bit, least significant bit first, zero-padded to a byte."""
    if pixels <= 0 or len(data) * 8 < pixels * n:
        raise LookupError(_UNSPLITTABLE)
    if pixels % 8 == 0:
        size = pixels // 8
        view = memoryview(data)
        return [bytes(view[(k - 1) * size : k * size]) for k in numbers]
    out = []
    for k in numbers:
        first, last = (k - 1) * pixels, k * pixels
        chunk = np.frombuffer(data, np.uint8, count=(last + 7) // 8 - first // 8, offset=first // 8)
        bits = np.unpackbits(chunk, bitorder="little")[first % 8 : first % 8 + pixels]
        out.append(np.packbits(bits, bitorder="little").tobytes())
    return out


def rendered_format(accept: str | None) -> str | None:
    """``png`` or ``jpeg`` for an Accept header of ``/rendered`` (PNG unless only JPEG is
    asked for), or None when it accepts neither (406)."""
    accept = (accept or "image/png").lower()
    if not any(t in accept for t in ("image/png", "image/jpeg", "image/*", "*/*")):
        return None
    return "jpeg" if "image/jpeg" in accept and "image/png" not in accept else "png"


def parse_window(value: str | None) -> tuple[float, float] | None:
    """``window=center,width[,function]`` query parameter."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) not in (2, 3):
        raise QueryError("window must be center,width[,function]")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise QueryError("window must be center,width[,function]") from None
    if width <= 0 or not np.isfinite(center) or not np.isfinite(width):
        raise QueryError("window width must be positive")
    return center, width


def render(ds: Dataset, *, frame: int = 1, window: tuple[float, float] | None = None,
           fmt: str = "png", quality: int = 90) -> bytes:
    """One frame as an unmarked 8-bit PNG or JPEG (the archive's ``/rendered`` route marks
    its copies through ``Masking.rendered_image``; both use ``safepacs.render.display``)."""
    from safepacs.render import display

    if not 1 <= frame <= (frame_count(ds) or 1):
        raise BadFrame("frame number out of range")
    return display.rendered(ds, serial=None, key=None, frame=frame, window=window, fmt=fmt, quality=quality)
