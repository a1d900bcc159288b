"""Box filling in every frame, and the patches that undo it exactly."""

from __future__ import annotations

import numpy as np

from safepacs.deid.pixels.redact import Rect, margin_for, merge, padded, redact, unredact


def test_padding_adds_a_margin_and_stays_inside_the_frame():
    r = padded(10, 20, 30, 10, rows=100, cols=200)
    m = margin_for(10)
    assert r == Rect(10 - m, 20 - m, 30 + 2 * m, 10 + 2 * m)
    edge = padded(0, 95, 300, 20, rows=100, cols=200)
    assert edge is not None and edge.x == 0 and edge.y + edge.h == 100 and edge.x + edge.w == 200
    assert padded(500, 500, 10, 10, rows=100, cols=100) is None
    assert padded(10, 20, 30, 10, rows=100, cols=200, margin=7) == Rect(3, 13, 44, 24)


def test_merge_drops_duplicates_and_nested_boxes_but_keeps_overlaps():
    big, inner, other = Rect(0, 0, 50, 20), Rect(5, 5, 10, 10), Rect(40, 10, 30, 30)
    assert set(merge([big, inner, big, other])) == {big, other}


def test_every_frame_is_filled_and_nothing_outside_changes():
    rng = np.random.default_rng(3)
    original = rng.integers(0, 4096, (4, 40, 60, 1), dtype=np.uint16)
    array = original.copy()
    rects = [Rect(5, 5, 20, 8), Rect(40, 30, 15, 10)]
    fills = [np.array([f], dtype=np.uint16) for f in (0, 1, 2, 3)]
    patches = redact(array, rects, fills)
    assert len(patches) == 8
    inside = np.zeros((40, 60), dtype=bool)
    for r in rects:
        inside[r.y : r.y + r.h, r.x : r.x + r.w] = True
    for f in range(4):
        assert np.all(array[f, inside, 0] == f)
        assert np.array_equal(array[f, ~inside], original[f, ~inside])
    unredact(array, patches)
    assert np.array_equal(array, original)


def test_overlapping_boxes_restore_exactly():
    rng = np.random.default_rng(4)
    original = rng.integers(0, 256, (1, 30, 30, 3), dtype=np.uint8)
    array = original.copy()
    patches = redact(array, [Rect(0, 0, 20, 20), Rect(10, 10, 20, 20)], [np.zeros(3, np.uint8)])
    assert not array[0, :20, :20].any() and not array[0, 10:, 10:].any()
    assert np.array_equal(array[0, 25, 5], original[0, 25, 5])
    unredact(array, patches)
    assert np.array_equal(array, original)


def test_redaction_writes_through_a_planar_view_into_the_bytes():
    planes = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(1, 3, 4, 5)
    buffer = bytearray(planes.tobytes())
    view = np.frombuffer(buffer, np.uint8).reshape(1, 3, 4, 5).transpose(0, 2, 3, 1)
    redact(view, [Rect(1, 1, 2, 2)], [np.array([7, 8, 9], np.uint8)])
    back = np.frombuffer(bytes(buffer), np.uint8).reshape(1, 3, 4, 5)
    assert back[0, 0, 1, 1] == 7 and back[0, 1, 2, 2] == 8 and back[0, 2, 1, 2] == 9
    assert back[0, 0, 0, 0] == planes[0, 0, 0, 0]
