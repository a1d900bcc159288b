"""Fill boxes in every frame of the stored pixel array, keeping what was there.

Pure numpy on the stored representation: no conversion, so a native image changes only
inside the boxes, and the original bytes of each box (one patch per frame) are enough to
give the exact original back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Rect:
    """A clipped rectangle in frame pixel coordinates (x, y of the top-left corner)."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Patch:
    """The original stored values of one rectangle in one frame (C order, rows x cols x samples)."""

    frame: int
    rect: Rect
    data: bytes


def margin_for(h: int) -> int:
    """Margin around a text box: OCR boxes hug the glyphs; anti-aliasing and descenders
    reach a few pixels further."""
    return max(2, h // 5)


def padded(
    x: int, y: int, w: int, h: int, rows: int, cols: int, margin: int | None = None
) -> Rect | None:
    """The box grown by ``margin`` (by default :func:`margin_for` its height) and clipped
    to the frame; None when nothing is left."""
    m = margin_for(h) if margin is None else margin
    x0, y0 = max(0, x - m), max(0, y - m)
    x1, y1 = min(cols, x + w + m), min(rows, y + h + m)
    if x1 <= x0 or y1 <= y0:
        return None
    return Rect(x0, y0, x1 - x0, y1 - y0)


def merge(rects: list[Rect]) -> list[Rect]:
    """Drop exact duplicates and rectangles inside another (fewer, non-redundant patches)."""
    unique = sorted(set(rects), key=lambda r: -(r.w * r.h))
    kept: list[Rect] = []
    for r in unique:
        if not any(k.x <= r.x and k.y <= r.y and k.x + k.w >= r.x + r.w and k.y + k.h >= r.y + r.h
                   for k in kept):
            kept.append(r)
    return kept


def redact(array: np.ndarray, rects: list[Rect], fills: list[np.ndarray]) -> list[Patch]:
    """Fill ``rects`` in every frame of ``array`` (frames, rows, cols, samples) in place.

    ``fills[f]`` is the value (one per sample) for frame ``f``.  Returns the original
    contents, one patch per rectangle and frame, each taken just before its own fill
    (overlapping rectangles restore exactly when patches go back in reverse order).
    """
    patches: list[Patch] = []
    for f in range(array.shape[0]):
        for r in rects:
            region = array[f, r.y : r.y + r.h, r.x : r.x + r.w, :]
            patches.append(Patch(f, r, np.ascontiguousarray(region).tobytes()))
            region[...] = fills[f]
    return patches


def unredact(array: np.ndarray, patches: list[Patch]) -> None:
    """Put patches back into ``array`` in place (reverse order undoes overlaps)."""
    for p in reversed(patches):
        r = p.rect
        region = array[p.frame, r.y : r.y + r.h, r.x : r.x + r.w, :]
        values = np.frombuffer(p.data, dtype=array.dtype)
        if values.size != region.size:
            raise ValueError("pixel patch does not fit the image")
        region[...] = values.reshape(region.shape)
