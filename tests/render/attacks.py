"""What happens to a leaked image: screenshots, re-compression, resizing, cropping.

Each attack takes the marked stored values (16-bit) and returns what a leaker would pass
on, always 8-bit display values as a screenshot or an exported PNG/JPEG holds them.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def window8(values: np.ndarray, center: float, width: float) -> np.ndarray:
    lo = center - width / 2
    return np.clip(np.rint((values.astype(np.float64) - lo) / width * 255), 0, 255).astype(np.uint8)


def full8(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    return window8(values, (lo + hi) / 2, hi - lo)


def screenshot(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A viewer's window/level (centre and width chosen at random around the anatomy)."""
    lo, hi = np.percentile(values, (1, 99))
    centre = lo + (hi - lo) * rng.uniform(0.35, 0.65)
    return window8(values, centre, (hi - lo) * rng.uniform(0.6, 1.4))


def jpeg(values: np.ndarray, rng: np.random.Generator, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(full8(values)).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def half(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = Image.fromarray(full8(values))
    return np.asarray(img.resize((img.width // 2, img.height // 2), Image.Resampling.BICUBIC))


def crop(values: np.ndarray, rng: np.random.Generator, area: float = 0.7) -> np.ndarray:
    """70% of the area at a random offset (and a random aspect)."""
    rows, cols = values.shape[:2]
    aspect = rng.uniform(0.8, 1.25)
    h = int(min(rows, rows * np.sqrt(area) * aspect))
    w = int(min(cols, rows * cols * area / h))
    y, x = int(rng.integers(0, rows - h + 1)), int(rng.integers(0, cols - w + 1))
    return full8(values)[y : y + h, x : x + w]


ATTACKS = {"jpeg75": jpeg, "half": half, "crop70": crop, "screenshot8": screenshot}
