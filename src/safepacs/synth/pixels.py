"""Plausible pixel data, made with whole-array numpy operations only.

The benchmark writes gigabytes with this module, so nothing loops over pixels in
Python: each image is a cached anatomical phantom plus per-image noise from a seeded
``numpy.random.Generator`` (same seed, same bytes).  No text is ever drawn into the
pixels, which is why the builder may state BurnedInAnnotation "NO".
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def _grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates in [-1, 1], as broadcastable column and row vectors."""
    y = np.linspace(-1.0, 1.0, rows, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, cols, dtype=np.float32)[None, :]
    return y, x


def _ellipse(y, x, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


@lru_cache(maxsize=8)
def _chest(rows: int, cols: int) -> np.ndarray:
    """Attenuation-like chest phantom in [0, 1] (1 = dense), read-only and cached."""
    y, x = _grid(rows, cols)
    img = np.full((rows, cols), 0.05, dtype=np.float32)
    img[_ellipse(y, x, 0.05, 0.0, 0.95, 0.85)] = 0.55  # soft tissue
    lungs = _ellipse(y, x, -0.05, -0.38, 0.62, 0.3) | _ellipse(y, x, -0.05, 0.38, 0.62, 0.3)
    img[lungs] = 0.2
    img[_ellipse(y, x, 0.15, 0.1, 0.32, 0.22)] = 0.6  # heart
    spine = (np.abs(x) < 0.07) & (np.abs(y) < 0.95)
    img[np.broadcast_to(spine, img.shape)] = 0.85
    ribs = (np.sin(y * 14.0 + np.abs(x) * 3.0) > 0.85) & lungs
    img[ribs] = 0.45
    img.setflags(write=False)
    return img


def radiograph(
    rng: np.random.Generator, rows: int, cols: int, bits_stored: int, monochrome1: bool
) -> np.ndarray:
    """A projection radiograph as uint16 within ``bits_stored``.

    MONOCHROME2 shows dense tissue bright; MONOCHROME1 stores the inverse, as CR
    readers do.
    """
    top = (1 << bits_stored) - 1
    noise = max(1, top // 64)
    gain = rng.uniform(0.7, 0.9)
    base = (_chest(rows, cols) * (gain * (top - noise))).astype(np.uint16)
    base += rng.integers(0, noise, size=base.shape, dtype=np.uint16)
    if monochrome1:
        np.subtract(top, base, out=base)
    return base


def ct_slice(rng: np.random.Generator, size: int, z: float, signed: bool) -> np.ndarray:
    """An axial CT slice in Hounsfield units.

    Stored as int16 HU when ``signed`` (intercept 0) else as uint16 HU + 1024
    (intercept -1024), both common in the wild.
    """
    y, x = _grid(size, size)
    lung_scale = 0.6 + 0.3 * float(np.sin(z))
    hu = np.full((size, size), -1000, dtype=np.int16)
    hu[_ellipse(y, x, 0.0, 0.0, 0.7, 0.9)] = 40
    hu[_ellipse(y, x, -0.05, -0.42, 0.45 * lung_scale, 0.3)] = -850
    hu[_ellipse(y, x, -0.05, 0.42, 0.45 * lung_scale, 0.3)] = -850
    hu[_ellipse(y, x, 0.45, 0.0, 0.12, 0.12)] = 700  # vertebra
    hu += rng.integers(-20, 21, size=hu.shape, dtype=np.int16)
    if signed:
        return hu
    return (hu.astype(np.int32) + 1024).clip(0, 4095).astype(np.uint16)


def mr_slice(rng: np.random.Generator, size: int, z: float) -> np.ndarray:
    """An axial brain MR slice, uint16 within 12 bits."""
    y, x = _grid(size, size)
    r = 0.75 + 0.1 * float(np.cos(z))
    img = np.zeros((size, size), dtype=np.uint16)
    img[_ellipse(y, x, 0.0, 0.0, 0.9 * r, 0.75 * r)] = 2600  # scalp/skull marrow
    img[_ellipse(y, x, 0.0, 0.0, 0.8 * r, 0.66 * r)] = 1500  # brain
    img[_ellipse(y, x, -0.05, -0.12, 0.25 * r, 0.07)] = 400  # ventricles
    img[_ellipse(y, x, -0.05, 0.12, 0.25 * r, 0.07)] = 400
    img += rng.integers(0, 120, size=img.shape, dtype=np.uint16)
    return img


@lru_cache(maxsize=8)
def _fan(rows: int, cols: int) -> np.ndarray:
    """Boolean mask of an ultrasound sector, apex at top centre."""
    y = np.arange(rows, dtype=np.float32)[:, None] / max(rows - 1, 1)
    x = (np.arange(cols, dtype=np.float32)[None, :] - (cols - 1) / 2) / max(cols - 1, 1)
    angle = np.arctan2(x, y + 0.05)
    mask = (np.abs(angle) < 0.6) & (y > 0.04) & (y < 0.95)
    mask.setflags(write=False)
    return mask


def ultrasound_rgb(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """One RGB ultrasound frame (rows, cols, 3) uint8: speckle in a sector, a Doppler blob."""
    fan = _fan(rows, cols)
    speckle = rng.rayleigh(45.0, size=(rows, cols)).clip(0, 255).astype(np.uint8)
    grey = np.where(fan, speckle, np.uint8(0))
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    y, x = _grid(rows, cols)
    cy, cx = rng.uniform(-0.1, 0.4), rng.uniform(-0.2, 0.2)
    blob = np.broadcast_to(_ellipse(y, x, cy, cx, 0.12, 0.08), fan.shape) & fan
    rgb[blob, 0] = 200
    rgb[blob, 1] //= 4
    rgb[blob, 2] //= 4
    return rgb


def ultrasound_cine(rng: np.random.Generator, frames: int, rows: int, cols: int) -> np.ndarray:
    """Multi-frame RGB ultrasound (frames, rows, cols, 3) uint8."""
    return np.stack([ultrasound_rgb(rng, rows, cols) for _ in range(frames)])


def angiogram(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """Multi-frame X-ray angiography (frames, size, size) uint8: contrast filling vessels."""
    y, x = _grid(size, size)
    background = (150 + 30 * np.cos(x * 2.0) * np.cos(y * 1.5)).astype(np.float32)
    paths = [np.abs(x - 0.3 * np.sin(y * k + k)) < 0.02 + 0.01 * k for k in (2.0, 3.0, 4.5)]
    vessels = np.logical_or.reduce(paths)
    out = np.empty((frames, size, size), dtype=np.uint8)
    for f in range(frames):  # one vectorised frame per iteration
        fill = (y < -1.0 + 2.0 * (f + 1) / frames) & vessels
        frame = background - 90.0 * fill
        frame += rng.normal(0.0, 4.0, size=(size, size)).astype(np.float32)
        out[f] = frame.clip(0, 255).astype(np.uint8)
    return out
