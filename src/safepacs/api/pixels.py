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
        raise ValueError("window must be center,width[,function]")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError("window must be center,width[,function]") from None
    if width <= 0 or not np.isfinite(center) or not np.isfinite(width):
        raise ValueError("window width must be positive")
    return center, width


def render(ds: Dataset, *, frame: int = 1, window: tuple[float, float] | None = None,
           fmt: str = "png", quality: int = 90) -> bytes:
    """One frame as an unmarked 8-bit PNG or JPEG (the archive's ``/rendered`` route marks
    its copies through ``Masking.rendered_image``; both use ``safepacs.render.display``)."""
    from safepacs.render import display

    if not 1 <= frame <= number_of_frames(ds):
        raise ValueError("frame number out of range")
    return display.rendered(ds, serial=None, key=None, frame=frame, window=window, fmt=fmt, quality=quality)
