"""Frames and rendered images from a DICOM object (WADO-RS ``/frames`` and ``/rendered``).

Pure functions on a pydicom Dataset.  Native pixel data is sliced by byte offsets without
decoding; encapsulated pixel data yields its compressed frames as stored.  Rendering decodes
(pylibjpeg for compressed syntaxes), applies the modality LUT and a window (requested, from
the header, or the data range), inverts MONOCHROME1, and encodes PNG or JPEG with Pillow.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom import Dataset
from pydicom.encaps import generate_frames
from pydicom.multival import MultiValue


def number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def frames(ds: Dataset, numbers: list[int]) -> list[bytes]:
    """The bytes of the requested 1-based frames; ValueError if one is out of range."""
    if "PixelData" not in ds:
        raise LookupError("the instance has no pixel data")
    n = number_of_frames(ds)
    for k in numbers:
        if not 1 <= k <= n:
            raise ValueError("frame number out of range")
    data = ds.PixelData
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        allf = list(generate_frames(data, number_of_frames=n))
        return [allf[k - 1] for k in numbers]
    rows, cols = int(ds.Rows), int(ds.Columns)
    spp = int(ds.get("SamplesPerPixel", 1))
    bits = int(ds.BitsAllocated)
    size = rows * cols * spp * bits // 8
    if bits == 1 or len(data) < size * n:
        raise LookupError("pixel data cannot be split into frames")
    view = memoryview(data)
    return [bytes(view[(k - 1) * size : k * size]) for k in numbers]


def parse_window(value: str | None) -> tuple[float, float] | None:
    """``window=center,width[,function]`` query parameter."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) not in (2, 3):
        raise ValueError("window must be center,width[,function]")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError("window must be center,width[,function]") from None
    if width <= 0 or not np.isfinite(center) or not np.isfinite(width):
        raise ValueError("window width must be positive")
    return center, width


def _first(value) -> float | None:
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def render(ds: Dataset, *, frame: int = 1, window: tuple[float, float] | None = None,
           fmt: str = "png", quality: int = 90) -> bytes:
    """One frame as an 8-bit PNG or JPEG."""
    n = number_of_frames(ds)
    if not 1 <= frame <= n:
        raise ValueError("frame number out of range")
    arr = ds.pixel_array
    if n > 1:
        arr = arr[frame - 1]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if arr.ndim == 3:  # colour: already display values (pydicom converts YBR to RGB)
        img = Image.fromarray(_to_uint8(arr, None), "RGB")
    else:
        values = arr.astype(np.float64)
        slope = _first(ds.get("RescaleSlope")) or 1.0
        intercept = _first(ds.get("RescaleIntercept")) or 0.0
        values = values * slope + intercept
        win = window
        if win is None:
            c, w = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
            if c is not None and w is not None and w > 0:
                win = (c, w)
        out = _to_uint8(values, win)
        if photometric == "MONOCHROME1":
            out = 255 - out
        img = Image.fromarray(out, "L")
    buf = io.BytesIO()
    if fmt == "jpeg":
        img.save(buf, "JPEG", quality=quality)
    else:
        img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _to_uint8(values: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    values = values.astype(np.float64)
    if window is not None:
        c, w = window
        lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2  # PS3.3 C.11.2.1.2.1 (linear)
    else:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    scaled = (values - lo) / (hi - lo) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
