"""Cheap text-line proposals: they must cover every drawn line, and little else."""

from __future__ import annotations

import numpy as np
import pytest

from safepacs.deid.pixels import detect
from safepacs.synth import burned
from safepacs.synth.pixels import radiograph

pytestmark = pytest.mark.skipif(burned.fonts_available() is not None,
                                reason=burned.fonts_available() or "")


def overlap(a, b) -> float:
    """Fraction of box ``a`` covered by box ``b``."""
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    return max(0, x1 - x0) * max(0, y1 - y0) / (a.w * a.h)


@pytest.mark.parametrize("seed", range(6))
def test_every_drawn_line_is_proposed(seed):
    image = burned.chest_xray(seed, harmless=True)
    proposals = detect.propose(image.frame)
    for planted in image.planted:
        best = max((overlap(planted.box, p) for p in proposals), default=0.0)
        assert best > 0.9, planted.kind


def test_a_radiograph_without_text_yields_few_line_proposals():
    rng = np.random.default_rng(3)
    stored = radiograph(rng, 2048, 2048, 12, False)
    frame = (stored >> 4).astype(np.uint8)
    lines = [p for p in detect.propose(frame) if p.w > detect.GLYPH_ASPECT * p.h]
    assert len(lines) <= 2


def test_boxes_are_in_full_resolution_and_inside_the_frame():
    image = burned.chest_xray(11, rows=2560, cols=2304)
    rows, cols = image.frame.shape
    for p in detect.propose(image.frame):
        assert 0 <= p.x and 0 <= p.y and p.x + p.w <= cols and p.y + p.h <= rows


def test_ink_masks_find_strokes_of_either_polarity():
    frame = np.full((60, 200), 40, np.uint8)
    frame[20:40, 20:24] = 230  # three bright strokes
    frame[20:40, 40:44] = 230
    frame[20:40, 60:64] = 230
    inverted = 255 - frame
    for f in (frame, inverted):
        ink, blobs, _ = detect.ink_masks(f, 10, 10, 80, 40)[0]
        assert blobs == 3
        assert ink[15, 12] == 1 and ink[15, 20] == 0  # strokes, not the background


def test_rejects_anything_but_a_2d_uint8_frame():
    with pytest.raises(ValueError):
        detect.propose(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError):
        detect.propose(np.zeros((10, 10), np.uint16))
