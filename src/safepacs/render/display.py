"""Rendered (PNG/JPEG) copies carry the mark in display values.

Why mark after windowing: a viewer's 8-bit image is what gets screenshotted and passed
on, and a mark placed in display grey levels keeps the same strength whatever window the
reader chose.  The amplitude (default 2 grey levels, PSNR about 42 dB on the 8-bit image)
is far below what the eye sees on anatomy and survives JPEG at quality 75.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from PIL import Image
from pydicom import Dataset

from safepacs.deid.pixels.frames import decode
from safepacs.dicom.image import frame_count
from safepacs.render.watermark import TILE, embed, tile

DISPLAY_AMPLITUDE = 2


def to_display(ds: Dataset, *, frame: int = 1, window: tuple[float, float] | None = None) -> np.ndarray:
    """One frame as 8-bit display values (modality LUT, window, MONOCHROME1 inverted)."""
    frames = frame_count(ds)
    if frames is None:
        raise ValueError("NumberOfFrames is malformed")
    arr = decode(ds)[0]  # never GDCM when another plugin can: see safepacs.deid.pixels.frames
    if frames > 1:
        arr = arr[frame - 1]
    if arr.ndim == 3:
        return _scale(arr.astype(np.float32), None)
    slope = float(_first(ds.get("RescaleSlope")) or 1.0)
    intercept = float(_first(ds.get("RescaleIntercept")) or 0.0)
    if window is None:
        c, w = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        window = (c, w) if c is not None and w is not None and w > 0 else None
    invert = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    if arr.dtype.kind in "ui" and arr.dtype.itemsize <= 2:
        # modality LUT and linear window fused into one saturating multiply-add (OpenCV):
        # about 1 ms on 2048x2048, against 8 for a 64k-entry lookup table's gather
        if window is None:
            used = sorted((float(arr.min()) * slope + intercept, float(arr.max()) * slope + intercept))
            window = ((used[0] + used[1]) / 2 + 0.5, max(used[1] - used[0], 1e-6) + 1)
        c, w = window
        lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
        if hi <= lo:
            return np.zeros(arr.shape, np.uint8)
        k = 255.0 / (hi - lo)
        src = np.ascontiguousarray(arr if arr.dtype.itemsize == 2 or arr.dtype == np.uint8 else arr.astype(np.int16))
        out = cv2.addWeighted(src, slope * k, src, 0.0, (intercept - lo) * k, dtype=cv2.CV_8U)
        return 255 - out if invert else out
    out = _scale(arr.astype(np.float32) * slope + intercept, window)
    return 255 - out if invert else out


def _first(value: object) -> float | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | int | float):
        try:
            value = list(value)[0]  # type: ignore[call-overload]
        except (TypeError, IndexError):
            return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _scale(values: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    if window is not None:
        c, w = window
        lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    else:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    scaled = (values - lo) * (255.0 / (hi - lo))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def mark_display(image: np.ndarray, serial: int, key: bytes, *, amplitude: int = DISPLAY_AMPLITUDE) -> np.ndarray:
    """The 8-bit image (grey or RGB) with the watermark of ``serial``."""
    if image.dtype != np.uint8 or image.ndim != 2:
        return embed(image, serial, key, amplitude=amplitude, bounds=(0, 255))
    return _apply_tiles(image, *_tiles(serial, key, amplitude))


def _tiles(serial: int, key: bytes, amplitude: int) -> tuple[np.ndarray, np.ndarray]:
    """The tile's raised and lowered pixels, as 8-bit steps of ``amplitude``."""
    pat = tile(key, serial)
    return (pat > 0).astype(np.uint8) * amplitude, (pat < 0).astype(np.uint8) * amplitude


def _apply_tiles(image: np.ndarray, up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """Grey 8-bit (the common case): the tiles applied with saturating adds (OpenCV,
    without the GIL), one band of tile rows at a time against the tiles repeated across
    once: no image-sized pattern is ever made (two of them were most of the mark's cost)."""
    rows, cols = image.shape
    reps = -(-cols // TILE)
    up = np.ascontiguousarray(np.tile(up, (1, reps))[:, :cols])
    down = np.ascontiguousarray(np.tile(down, (1, reps))[:, :cols])
    out = np.empty_like(image)
    for top in range(0, rows, TILE):
        n = min(TILE, rows - top)
        band = out[top : top + n]
        cv2.add(image[top : top + n], up[:n], dst=band)
        cv2.subtract(band, down[:n], dst=band)
    return out


#: a step applied to the image (or to each strip of it, given the strip's first row) just
#: before coding: the watermark, so that each strip's thread marks its own rows
Prepare = Callable[[np.ndarray], np.ndarray]


def encode(image: np.ndarray, fmt: str = "png", quality: int = 90, *, prepare: Prepare | None = None) -> bytes:
    """PNG (fast compression) or JPEG bytes of an 8-bit grey or RGB image, after
    ``prepare`` (which must act on rows in whole watermark tiles: strips start at them)."""
    if fmt == "jpeg":
        return encode_jpeg(image, quality, prepare=prepare)
    if prepare is not None:
        image = prepare(image)
    buf = io.BytesIO()
    Image.fromarray(image, "RGB" if image.ndim == 3 else "L").save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def marker(serial: int, key: bytes) -> Prepare:
    """The watermark of ``serial`` as a :data:`Prepare` step (its tile made once, for every
    strip)."""
    up, down = _tiles(serial, key, DISPLAY_AMPLITUDE)

    def mark(image: np.ndarray) -> np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 2:
            return mark_display(image, serial, key)
        return _apply_tiles(image, up, down)

    return mark


#: strips are cut at multiples of this many rows: whole watermark tiles (the mark of a strip
#: is then the mark of those rows of the whole image), and a multiple of 8 rows of 8x8
#: blocks, so each strip's restart markers (numbered modulo 8) continue the previous ones
_STRIP_ROWS = TILE
_STRIP_MIN_ROWS = 512  # below this one strip is as fast
_STRIPS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="safepacs-jpeg")


def encode_jpeg(image: np.ndarray, quality: int = 90, *, prepare: Prepare | None = None) -> bytes:
    """Baseline JPEG of an 8-bit grey or RGB image.  A grey image is coded by OpenCV's
    libjpeg-turbo, which lets go of the GIL (Pillow's in-memory encoder holds it); a large
    one as two strips on two threads, joined into one standard JPEG.

    Why the join is one valid JPEG that decodes to the very pixels of a single encode: each
    strip is coded with a restart marker after every row of 8x8 blocks (restart markers
    are baseline JPEG; a decoder resets the DC predictor there), with the same standard
    quantisation and Huffman tables.  The top strip's rows of blocks are a multiple of 8,
    so the marker that joins the strips is RST7 and the bottom strip's own markers already
    carry the right numbers; only the frame height is patched.  Anything unexpected in the
    strips' headers falls back to one encode.  A viewer waits about half as long."""
    if image.ndim != 2:
        buf = io.BytesIO()
        Image.fromarray(image if prepare is None else prepare(image), "RGB").save(buf, "JPEG", quality=quality)
        return buf.getvalue()
    rows = image.shape[0]
    if rows < _STRIP_MIN_ROWS:
        return _grey_jpeg(image, quality, prepare=prepare)
    cut = rows // 2 // _STRIP_ROWS * _STRIP_ROWS
    top = _STRIPS.submit(_grey_jpeg, image[:cut], quality, restart=True, prepare=prepare)
    bottom = _grey_jpeg(image[cut:], quality, restart=True, prepare=prepare)
    joined = join_strips(top.result(), bottom, rows)
    return joined if joined is not None else _grey_jpeg(image, quality, prepare=prepare)


def _grey_jpeg(image: np.ndarray, quality: int, *, restart: bool = False, prepare: Prepare | None = None) -> bytes:
    if prepare is not None:
        image = prepare(image)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if restart:  # one restart interval = one row of 8x8 blocks
        params += [cv2.IMWRITE_JPEG_RST_INTERVAL, -(-image.shape[1] // 8)]
    ok, out = cv2.imencode(".jpg", np.ascontiguousarray(image), params)
    if not ok:
        raise ValueError("the image could not be coded as JPEG")
    return out.tobytes()


def _segments(data: bytes) -> tuple[list[tuple[int, int, int]], int] | None:
    """(marker, start, end) of every header segment up to SOS, and where the coded data
    begins; None if the stream is not laid out as expected."""
    if data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
        return None
    out, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        out.append((marker, pos, end))
        if marker == 0xDA:  # start of scan: coded data follow
            return out, end
        pos = end
    return None


def join_strips(top: bytes, bottom: bytes, rows: int) -> bytes | None:
    """One JPEG of ``rows`` rows from two strips coded with a restart marker per block row
    (see :func:`encode_jpeg`), or None when their headers differ in anything but height."""
    a, b = _segments(top), _segments(bottom)
    if a is None or b is None or [m for m, _, _ in a[0]] != [m for m, _, _ in b[0]]:
        return None
    for (marker, s1, e1), (_, s2, e2) in zip(a[0], b[0], strict=True):
        if marker == 0xC0:  # frame header: precision, height (2 bytes), width, components
            if top[s1 : s1 + 5] != bottom[s2 : s2 + 5] or top[s1 + 7 : e1] != bottom[s2 + 7 : e2]:
                return None
        elif top[s1:e1] != bottom[s2:e2]:
            return None
    markers = [m for m, _, _ in a[0]]
    if 0xC0 not in markers or 0xDD not in markers or not 0 < rows < 1 << 16:
        return None
    sof = a[0][markers.index(0xC0)][1]
    head = bytearray(top[: a[1]])
    head[sof + 5 : sof + 7] = rows.to_bytes(2, "big")
    return b"".join((head, top[a[1] : -2], b"\xff\xd7", bottom[b[1] :]))


def rendered(ds: Dataset, *, serial: int | None, key: bytes | None, frame: int = 1,
             window: tuple[float, float] | None = None, fmt: str = "png", quality: int = 90) -> bytes:
    """A marked PNG/JPEG of one frame; unmarked only when ``serial`` is None (levels
    without watermark)."""
    image = to_display(ds, frame=frame, window=window)
    if serial is None:
        return encode(image, fmt, quality)
    if not key:
        raise ValueError("a watermark key is needed")
    return encode(image, fmt, quality, prepare=marker(serial, key))
