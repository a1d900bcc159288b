"""An invisible, keyed forensic watermark that names the issued copy of an image.

Why this design: a leaked image has usually been cropped, shrunk, re-compressed or
screenshotted, so the mark must be found without the original and without knowing where
the crop began or how much the image was scaled.  The mark is a keyed +-1 pattern of
``CHIP``-pixel squares (mid frequencies: below JPEG's coarse quantisation, above the
anatomy) repeated in ``TILE``-pixel tiles over the whole image.  Folding any crop onto one
tile sums hundreds of copies; a keyed pilot part of the tile finds the crop offset by FFT
cross-correlation, and a few candidate scales undo resizing.  The payload (an issuance
serial) is spread over many chips per bit and followed by keyed check bits, so a decode
that is wrong, unmarked or marked under another key is rejected, never misattributed.

Pure numpy (and OpenCV for resampling); the pattern comes from SHAKE-256 of the key so it
is the same on every machine and numpy version.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

CHIP = 4  #: side of one pattern square, pixels (at the issued resolution)
CHIPS = 32  #: squares per tile side
TILE = CHIP * CHIPS  #: tile side, pixels
SERIAL_BITS = 32
CHECK_BITS = 24
PAYLOAD_BITS = SERIAL_BITS + CHECK_BITS
PILOT_SHARE = 4  #: one chip in PILOT_SHARE is pilot (synchronisation), the rest payload
#: default embedding amplitude as a fraction of the image's dynamic range: +-0.5% keeps
#: PSNR (against that range) near 46 dB and is about one grey level of an 8-bit display
STRENGTH = 1 / 200
#: scales (issued size -> seen size) tried when decoding, most likely first
SCALES = (1.0, 0.5, 0.75, 2 / 3, 0.8, 1.25, 1.5, 2.0)
#: minimum z-score of the pilot correlation peak before the payload is read
SYNC_Z = 5.5


@dataclass(frozen=True)
class Detection:
    """A watermark that decoded and passed its keyed check."""

    serial: int
    scale: float
    sync_z: float  #: strength of the synchronisation peak (z-score)
    margin: float  #: smallest |soft bit| / mean |soft bit|: how clearly the bits read


# --- the keyed pattern ---------------------------------------------------------------------
@lru_cache(maxsize=16)
def _layout(key: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signs, role, bit) per chip: ``role`` 1 = pilot; ``bit`` = payload bit index."""
    n = CHIPS * CHIPS
    stream = hashlib.shake_256(b"safepacs-watermark-layout-v1\x00" + key).digest(n * 5)
    raw = np.frombuffer(stream, dtype=np.uint8)
    signs = np.where(raw[:n] & 1, 1.0, -1.0).astype(np.float32)
    order = np.argsort(np.frombuffer(raw[n:].tobytes(), dtype=">u4"), kind="stable")
    role = np.zeros(n, np.int8)
    bit = np.full(n, -1, np.int32)
    pilots = n // PILOT_SHARE
    role[order[:pilots]] = 1
    bit[order[pilots:]] = np.arange(n - pilots) % PAYLOAD_BITS
    return signs.reshape(CHIPS, CHIPS), role.reshape(CHIPS, CHIPS), bit.reshape(CHIPS, CHIPS)


def _check(key: bytes, serial: int) -> int:
    mac = hmac.new(key, b"safepacs-watermark-check-v1\x00" + serial.to_bytes(4, "big"), hashlib.sha256)
    return int.from_bytes(mac.digest()[: CHECK_BITS // 8], "big")


def payload_bits(key: bytes, serial: int) -> np.ndarray:
    """The +-1 payload: the serial then its keyed check value, most significant bit first."""
    if not 0 <= serial < 1 << SERIAL_BITS:
        raise ValueError(f"serial must fit in {SERIAL_BITS} bits")
    word = (serial << CHECK_BITS) | _check(key, serial)
    bits = [(word >> (PAYLOAD_BITS - 1 - i)) & 1 for i in range(PAYLOAD_BITS)]
    return np.array(bits, np.float32) * 2 - 1


def tile(key: bytes, serial: int) -> np.ndarray:
    """The TILE x TILE pattern of +-1 values that carries ``serial`` under ``key``."""
    signs, role, bit = _layout(key)
    bits = payload_bits(key, serial)
    chips = np.where(role == 1, signs, signs * bits[np.maximum(bit, 0)])
    return chips.repeat(CHIP, axis=0).repeat(CHIP, axis=1)


@lru_cache(maxsize=16)
def _pilot_spectrum(key: bytes) -> np.ndarray:
    signs, role, _ = _layout(key)
    pilot = np.kron(np.where(role == 1, signs, 0.0), np.ones((CHIP, CHIP)))
    return np.conj(np.fft.rfft2(pilot))


def pattern(key: bytes, serial: int, shape: tuple[int, int]) -> np.ndarray:
    """The pattern tiled over an image of ``shape`` (rows, columns), origin at the corner."""
    rows, cols = shape
    t = tile(key, serial)
    return np.tile(t, (-(-rows // TILE), -(-cols // TILE)))[:rows, :cols]


# --- embedding -----------------------------------------------------------------------------
def embed(
    image: np.ndarray,
    serial: int,
    key: bytes,
    *,
    strength: float = STRENGTH,
    amplitude: float | None = None,
    bounds: tuple[float, float] | None = None,
) -> np.ndarray:
    """A marked copy of ``image``: (rows, cols), (rows, cols, samples) or (frames, rows,
    cols, samples), any integer or float dtype.  Colour samples all get the same change
    (it lands in luminance).  ``amplitude`` (in stored units) overrides ``strength`` x the
    image's dynamic range; values stay within ``bounds`` (default: the dtype's range)."""
    arr = np.asarray(image)
    spatial = _spatial_axes(arr)
    rows, cols = arr.shape[spatial[0]], arr.shape[spatial[1]]
    if amplitude is None:
        lo, hi = float(arr.min()), float(arr.max())
        amplitude = strength * max(hi - lo, 1.0)
    integer = np.issubdtype(arr.dtype, np.integer)
    if bounds is None:
        info = np.iinfo(arr.dtype) if integer else None
        bounds = (info.min, info.max) if info is not None else (-np.inf, np.inf)
    if integer:
        work = np.int16 if arr.dtype.itemsize == 1 else np.int64 if arr.dtype.itemsize >= 4 else np.int32
    else:
        work = np.float64
    step = max(1, math.floor(amplitude)) if integer else amplitude  # never above strength
    band = np.tile((tile(key, serial) * step).astype(work), (1, -(-cols // TILE)))[:, :cols]
    out = arr.astype(work)
    ry, cx = spatial
    for y in range(0, rows, TILE):  # one tile-high band at a time: no full-size temporary
        h = min(TILE, rows - y)
        index = [slice(None)] * arr.ndim
        index[ry] = slice(y, y + h)
        shape = [1] * arr.ndim
        shape[ry], shape[cx] = h, cols
        out[tuple(index)] += band[:h].reshape(shape)
    np.clip(out, bounds[0], bounds[1], out=out)
    return out.astype(arr.dtype)


def _spatial_axes(arr: np.ndarray) -> tuple[int, int]:
    if arr.ndim == 2:
        return (0, 1)
    if arr.ndim == 3:
        return (0, 1) if arr.shape[2] in (1, 3, 4) else (1, 2)
    if arr.ndim == 4:
        return (1, 2)
    raise ValueError("image must have 2 to 4 dimensions")


def psnr(original: np.ndarray, marked: np.ndarray, peak: float) -> float:
    """Peak signal-to-noise ratio in dB of ``marked`` against ``original``."""
    diff = original.astype(np.float64) - marked.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


# --- detection -----------------------------------------------------------------------------
def to_gray(image: np.ndarray) -> np.ndarray:
    """One float32 plane: luminance of colour, the first frame of a stack."""
    arr = np.asarray(image)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim == 3:
        if arr.shape[2] >= 3:
            arr = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
        else:
            arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError("not an image")
    return arr.astype(np.float32)


def _whiten(gray: np.ndarray) -> np.ndarray:
    """Remove the anatomy (everything coarser than the chips) and equalise local contrast,
    so that flat lung and busy bone edges weigh alike in the sums that follow."""
    hp = gray - cv2.GaussianBlur(gray, (0, 0), float(CHIP))
    local = np.sqrt(cv2.GaussianBlur(hp * hp, (0, 0), 2.0 * CHIP))
    local += float(np.median(local)) * 1e-3 + 1e-6
    return np.clip(hp / local, -2.5, 2.5)


def _fold(plane: np.ndarray) -> np.ndarray:
    rows, cols = plane.shape
    pad = np.zeros((-(-rows // TILE) * TILE, -(-cols // TILE) * TILE), np.float32)
    pad[:rows, :cols] = plane
    return pad.reshape(pad.shape[0] // TILE, TILE, pad.shape[1] // TILE, TILE).sum(axis=(0, 2))


def _decode_folded(folded: np.ndarray, key: bytes) -> tuple[int, float, float] | None:
    corr = np.fft.irfft2(np.fft.rfft2(folded) * _pilot_spectrum(key), s=folded.shape)
    flat = np.abs(corr).ravel()
    peak = int(np.argmax(flat))
    z = (flat[peak] - float(np.mean(corr))) / (float(np.std(corr)) or 1.0)
    if z < SYNC_Z:
        return None
    dy, dx = divmod(peak, TILE)
    sign = 1.0 if corr.ravel()[peak] > 0 else -1.0  # an inverted display flips every chip
    aligned = np.roll(folded, (-dy, -dx), axis=(0, 1)) * sign
    chips = aligned.reshape(CHIPS, CHIP, CHIPS, CHIP).sum(axis=(1, 3))
    signs, role, bit = _layout(key)
    values = (chips * signs)[role == 0]
    soft = np.bincount(bit[role == 0], weights=values, minlength=PAYLOAD_BITS)
    word = 0
    for v in soft:
        word = (word << 1) | int(v > 0)
    serial, check = word >> CHECK_BITS, word & ((1 << CHECK_BITS) - 1)
    if not hmac.compare_digest(check.to_bytes(3, "big"), _check(key, serial).to_bytes(3, "big")):
        return None
    mean = float(np.mean(np.abs(soft))) or 1.0
    return serial, float(z), float(np.min(np.abs(soft))) / mean


def detect(image: np.ndarray, key: bytes, *, scales: tuple[float, ...] = SCALES) -> Detection | None:
    """The serial marked into ``image`` under ``key``, or None when no valid mark is found.

    ``image`` may be a crop, rescaled, re-compressed or windowed to 8 bits; a result is only
    returned when the keyed check bits match (false acceptance about 2^-24 per scale tried).
    """
    gray = to_gray(image)
    if min(gray.shape) < CHIP * 8:
        return None
    for scale in scales:
        plane = gray
        if scale != 1.0:
            size = (round(gray.shape[1] / scale), round(gray.shape[0] / scale))
            if min(size) < TILE or max(size) > 16384:
                continue
            plane = cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR)
        found = _decode_folded(_fold(_whiten(plane)), key)
        if found is not None:
            serial, z, margin = found
            return Detection(serial, scale, z, margin)
    return None


__all__ = [
    "CHIP",
    "PAYLOAD_BITS",
    "SERIAL_BITS",
    "STRENGTH",
    "TILE",
    "Detection",
    "detect",
    "embed",
    "payload_bits",
    "psnr",
    "to_gray",
]
