"""Cheap text-line proposals on a downscaled frame: where OCR should look.

OCR of a whole radiograph is slow and, on a noisy background, reads nothing.  Text,
whatever its polarity, font or contrast, is a row of small blobs with sharp edges and
similar heights; anatomy is large, smooth or long.  So: downscale to
:data:`WORK_SIDE`, keep thin bright and dark marks (top-hat and black-hat with a small
disc: steps and smooth anatomy vanish), threshold above the noise floor, keep components
of glyph size, chain neighbours on a shared baseline into lines, and drop lines whose
ink, seen at full resolution, does not alternate like strokes.  Pure numpy/OpenCV: about
10 ms for a 2048x2048 frame.

:func:`ink_masks` (the binarisation of one box) lives here too: the stroke test and the
OCR both need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import cv2
import numpy as np

#: Long side of the working image; larger frames are shrunk to it.
WORK_SIDE = 1024
#: Glyph height limits in working pixels.
MIN_GLYPH, MAX_GLYPH = 4, 90
#: A box at most this wide per unit of height is one glyph ("L", "左"); two ideographs
#: (a whole Chinese given name, or 赵勇) are wider, even on a label plate.
GLYPH_ASPECT = 1.25
#: Diameter of the disc that strokes fit in and anatomy does not (working pixels): the
#: top-hat / black-hat with it keeps thin bright / dark marks and flattens steps and
#: smooth anatomy, so text touching the body outline is not swallowed by it.
STROKE_KERNEL = 11


@dataclass(frozen=True)
class Proposal:
    """A candidate text line in full-resolution pixels and how many glyph blobs it has."""

    x: int
    y: int
    w: int
    h: int
    glyphs: int


def _edge_threshold(grad: np.ndarray) -> int:
    """Stroke strength that separates strokes from noise: above the noise floor, any contrast.

    The 95th percentile of a radiograph's top-hat / black-hat is noise and fine anatomy;
    text strokes stand clearly above it.
    """
    floor = float(np.percentile(grad[::4, ::4], 95))
    return int(min(60, max(10, floor * 2 + 6)))


#: Share of a blob's pixels at its two commonest grey levels (give or take eight) above
#: which it lies on a flat background: a panel on black or on plates, not speckle or bone.
FLAT_SHARE = 0.5


def _filtered(stats: np.ndarray) -> np.ndarray:
    """Stats rows (x, y, w, h, area) that could be glyphs or glyph groups."""
    w, h, area = stats[:, 2], stats[:, 3], stats[:, 4]
    keep = (
        (h >= MIN_GLYPH // 2)
        & (h <= MAX_GLYPH)
        & (w <= MAX_GLYPH * 12)
        & (area >= 4)
        & (area >= 0.08 * w * h)
    )
    return stats[keep, :5]


def _flat(values: np.ndarray) -> bool:
    """Whether most values lie at one or two grey levels (black, a label plate), give or
    take JPEG's ringing; speckle and bone spread over many."""
    window = np.convolve(np.bincount(values.ravel(), minlength=256), np.ones(17, np.int64), mode="same")
    first = int(window.argmax())
    share = int(window[first])
    window[max(0, first - 16) : first + 17] = 0
    return share + int(window.max()) >= FLAT_SHARE * values.size


#: Display level above which the brightest marks of a frame may be annotation ink.
TEXT_LEVEL = 200


def _components_at(mask: np.ndarray, x: int, y: int) -> np.ndarray:
    """Glyph-sized components (stats rows) of ``mask``, a crop whose corner is (x, y)."""
    _, _, sub, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    sub = sub[1:].copy()
    sub[:, 0] += x
    sub[:, 1] += y
    return _filtered(sub)


def _brightest(small: np.ndarray, labels: np.ndarray, stats: np.ndarray, i: int, top: int) -> np.ndarray:
    """Components of the frame's brightest level inside textured blob ``i``.

    Text typed into an ultrasound sector is drawn at full white (or a saturated colour,
    as bright on a dark frame): on speckle its strokes weld with the texture into a blob
    larger than any line, dropped whole.  The ink is still the brightest thing there,
    and sparse; anatomy that bright (bone, a needle) is large or long, and is dropped as
    a component too large for a glyph.
    """
    x, y, w, h = (int(v) for v in stats[i, :4])
    ink = (small[y : y + h, x : x + w] >= top - 80) & (labels[y : y + h, x : x + w] == i)
    if np.count_nonzero(ink) > 0.1 * int(stats[i, 4]):
        return np.zeros((0, 5), np.int32)  # saturated anatomy, not sparse ink
    # anti-aliased small type breaks up at any one level: close the gaps within a glyph
    return _components_at(cv2.dilate(ink.astype(np.uint8), np.ones((2, 2), np.uint8)), x, y)


def _split_components(small: np.ndarray, bright_ink: np.ndarray, dark_ink: np.ndarray) -> np.ndarray:
    """Components of the marks of both polarities, each weld of close lines split.

    The background between close lines of bright text is itself a thin dark mark to the
    black-hat (and between dark lines a bright one to the top-hat): in one mask it welds
    a panel of settings, names and dates into a single square blob, taken for one glyph
    and never read.  A blob with marks of both polarities on a flat background is split
    into the components of each polarity.  Speckle and bone are not flat: their welds
    stay whole (and are dropped when larger than a line), or every speck would become a
    line for OCR.
    """
    both = (bright_ink | dark_ink).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(both, connectivity=8)
    tall = np.flatnonzero(stats[:, 3] >= 2 * MIN_GLYPH)
    tall = tall[tall > 0]
    keep = np.ones(n, bool)
    keep[0] = False
    parts = []
    top = int(small.max())
    for i in tall:
        x, y, w, h = (int(v) for v in stats[i, :4])
        if not _flat(small[y : y + h : 2, x : x + w : 2][labels[y : y + h : 2, x : x + w : 2] == i]):
            if (h > MAX_GLYPH or w > MAX_GLYPH * 12) and top >= TEXT_LEVEL:
                parts.append(_brightest(small, labels, stats, i, top))
            continue
        mine = labels[y : y + h, x : x + w] == i
        share = np.count_nonzero(bright_ink[y : y + h, x : x + w] & mine) / max(int(stats[i, 4]), 1)
        if 0.15 <= share <= 0.85:
            glyphs = np.concatenate([_components_at(ink[y : y + h, x : x + w] & mine, x, y)
                                     for ink in (bright_ink, dark_ink)])
            parts.append(glyphs)
            # A blob one line tall is kept whole as well: the label of a radiograph (light
            # type on a dark plate, or outlined type) is such a blob, and its polarities
            # apart break the line into pieces that OCR no longer reads as one.
            if len(glyphs) == 0 or h >= 2 * float(np.median(glyphs[:, 3])):
                keep[i] = False
    return np.concatenate([_filtered(stats[keep]), *parts])


def _chain(comps: np.ndarray) -> list[list[int]]:
    """Group components into lines: vertical overlap, similar height, small gaps."""
    order = np.argsort(comps[:, 0], kind="stable")
    parent = list(range(len(comps)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    xs, ys, ws, hs = comps[:, 0], comps[:, 1], comps[:, 2], comps[:, 3]
    right = xs + ws
    for pos, i in enumerate(order):
        hi = hs[i]
        reach = right[i] + max(4, int(hi * 1.2))
        for j in order[pos + 1 :]:
            if xs[j] > reach:
                break
            hj = hs[j]
            top, bottom = max(ys[i], ys[j]), min(ys[i] + hi, ys[j] + hj)
            if bottom - top < 0.5 * min(hi, hj):
                continue
            # Specks under a glyph's height (dots, commas, counters) join any line of
            # small text; not a blob several lines tall, which they would weld to it.
            if max(hi, hj) > 2.6 * min(hi, hj) and (
                min(hi, hj) >= MIN_GLYPH or max(hi, hj) > 4 * MIN_GLYPH
            ):
                continue
            parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(comps)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _blobs(ink: np.ndarray) -> tuple[int, int]:
    """(number of ink blobs, typical blob height) of a 0/1 mask, specks ignored."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    heights = stats[1:, 3][stats[1:, 4] >= 3]
    if len(heights) == 0:
        return 0, 0
    return int(len(heights)), int(np.percentile(heights, 75))


def _plate(ink: np.ndarray) -> bool:
    """Whether the ink is a label plate rather than glyphs: one blob spanning the crop,
    or more than half of it marked (strokes are thin)."""
    if np.count_nonzero(ink) > 0.5 * ink.size:
        return True
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    rows, cols = ink.shape
    s = stats[1:]
    return bool(((s[:, 2] >= 0.8 * cols) & (s[:, 3] >= 0.6 * rows)).any()) and cols > 1.5 * rows


def _level_split(crop: np.ndarray, response: np.ndarray) -> np.ndarray:
    """Ink at the grey level of the strongest strokes.

    Burned-in text is drawn in one grey level; its contrast to what lies beneath changes
    along the line (air, then the body), its own level does not.  So ink is what lies
    near the level of the strongest responses and stands out at all from its
    surroundings.
    """
    contrast = float(np.percentile(response, 99.5))
    strong = response >= 0.5 * contrast
    level = float(np.median(crop[strong]))
    near = np.abs(crop.astype(np.int16) - int(level)) <= max(10.0, 0.3 * contrast)
    return (near & (response >= max(6.0, 0.12 * contrast))).astype(np.uint8)


def ink_masks(
    frame: np.ndarray, x: int, y: int, w: int, h: int
) -> list[tuple[np.ndarray, int, int]]:
    """Ink masks (0/1) of the box (x, y, w, h) of a uint8 frame, likeliest polarity first,
    with their number of blobs and line height.

    The background under burned-in text is rarely flat (air, then the body outline; a
    label plate), so one threshold of the crop can split background from background.  A
    top-hat (bright ink) and a black-hat (dark ink) with a disc a third as tall as the
    box (wider than any stroke; a disc leaves no residue along straight edges of any
    slope) flatten the background; they are computed with the frame around the box as
    context, so an edge leaving the box stays straight.  The stronger response is
    likelier the text, unless its ink is a plate spanning the box (dark text on a light
    label).  Neither rule is certain, so the OCR tries the other polarity when the
    first reads poorly.
    """
    if w < 2 or h < 2:
        return []
    k = int(min(max(h // 3, 5), 61)) | 1
    rows, cols = frame.shape
    x0, y0 = max(0, x - k), max(0, y - k)
    x1, y1 = min(cols, x + w + k), min(rows, y + h + k)
    context = cv2.copyMakeBorder(
        frame[y0:y1, x0:x1], k - (y - y0), k - (y1 - y - h), k - (x - x0), k - (x1 - x - w),
        cv2.BORDER_REPLICATE,
    )
    crop = frame[y : y + h, x : x + w]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    found = []
    for op in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT):
        response = cv2.morphologyEx(context, op, kernel)[k : k + h, k : k + w]
        if float(response.max()) < 8:
            continue
        strength = float(np.percentile(response, 97))
        ink = _level_split(crop, response)
        found.append((_plate(ink), -strength, ink))
    found.sort(key=lambda f: (f[0], f[1]))
    out = []
    for _, _, ink in found:
        blobs, _ = _blobs(ink)
        if blobs:
            out.append((ink, blobs, _line_height(ink)))
    return out


def line_spans(ink: np.ndarray) -> list[tuple[int, int]]:
    """(first, last + 1) rows of each text line of an ink mask, split by gaps.  A row
    counts as a gap when it holds under a tenth of the busiest row's ink: descenders,
    brackets and commas reach into the space between close lines."""
    counts = np.count_nonzero(ink, axis=1)
    if not counts.size or not counts.max():
        return []
    inked = counts > 0.1 * counts.max()
    gap = max(2, ink.shape[0] // 12)
    spans: list[list[int]] = []
    blank = gap
    for i, row in enumerate(inked):
        if row:
            if not spans or blank >= gap:
                spans.append([i, i + 1])
            spans[-1][1] = i + 1
            blank = 0
        else:
            blank += 1
    return [(a, b) for a, b in spans]


def line_runs(ink: np.ndarray) -> list[int]:
    """Heights of the text lines of an ink mask."""
    return [b - a for a, b in line_spans(ink)]


def _line_height(ink: np.ndarray) -> int:
    runs = [r for r in line_runs(ink) if r >= 3]
    return int(np.median(runs)) if runs else 0


def _stroke_like(frame: np.ndarray, x: int, y: int, w: int, h: int) -> bool:
    """Ink that alternates along the line's middle rows, as strokes do (edges do not).

    A word flips between ink and background several times per glyph along its inked
    rows; what is left of an anatomical edge or a plate border hardly does.
    """
    for ink, _, _ in ink_masks(frame, x, y, w, h):
        rows = ink[np.count_nonzero(ink, axis=1) > 0]  # the box may be taller than its text
        if len(rows) < 3:
            continue
        band = rows[len(rows) // 4 : len(rows) - len(rows) // 4 + 1]
        flips = np.count_nonzero(band[:, 1:] != band[:, :-1], axis=1)
        if float(np.median(flips)) >= max(3.0, 0.8 * w / max(len(rows), 1)):
            return True
    return False


def propose(frame: np.ndarray) -> list[Proposal]:
    """Candidate text lines of a 2-D uint8 display frame, in full-resolution pixels."""
    if frame.ndim != 2 or frame.dtype != np.uint8:
        raise ValueError("propose expects a 2-D uint8 frame")
    rows, cols = frame.shape
    scale = min(1.0, WORK_SIDE / max(rows, cols))
    small = (
        frame
        if scale == 1.0
        else cv2.resize(frame, (round(cols * scale), round(rows * scale)), interpolation=cv2.INTER_AREA)
    )
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (STROKE_KERNEL, STROKE_KERNEL))
    bright = cv2.morphologyEx(small, cv2.MORPH_TOPHAT, kernel)
    dark = cv2.morphologyEx(small, cv2.MORPH_BLACKHAT, kernel)
    threshold = _edge_threshold(np.maximum(bright, dark))
    comps = _split_components(small, bright >= threshold, dark >= threshold)
    if len(comps) == 0:
        return []
    lines = []
    for group in _chain(comps):
        g = comps[group]
        x0, y0 = int(g[:, 0].min()), int(g[:, 1].min())
        x1, y1 = int((g[:, 0] + g[:, 2]).max()), int((g[:, 1] + g[:, 3]).max())
        if MIN_GLYPH <= y1 - y0 <= MAX_GLYPH and x1 - x0 >= 2:
            lines.append((x0, y0, x1, y1, len(group)))
    out = []
    inv = 1.0 / scale
    for x0, y0, x1, y1, glyphs in _without_welds(lines):
        w, h = x1 - x0, y1 - y0
        pad = 2
        fx, fy = max(0, int((x0 - pad) * inv)), max(0, int((y0 - pad) * inv))
        fw = min(cols, int(np.ceil((x1 + pad) * inv))) - fx
        fh = min(rows, int(np.ceil((y1 + pad) * inv))) - fy
        if w > GLYPH_ASPECT * h and not _stroke_like(frame, fx, fy, fw, fh):
            continue  # a long blob without strokes: an edge, a wire, a ruler line
        out.append(Proposal(fx, fy, fw, fh, glyphs))
    return out


def _without_welds(lines: list[tuple[int, int, int, int, int]]) -> list[tuple[int, int, int, int, int]]:
    """Lines (x0, y0, x1, y1, glyphs) less the single blobs that hold two or more lines
    of text one above the other: the background between close lines of a panel, which
    the opposite polarity's filter marks as one mesh.  Read as a block, it would join a
    settings line to the name above it; the lines themselves are proposed apart."""
    multi = [ln for ln in lines if ln[4] >= 2]
    out = []
    for ln in lines:
        x0, y0, x1, y1, glyphs = ln
        if glyphs == 1 and y1 - y0 >= 2 * MIN_GLYPH:
            inner = sorted((b[1], b[3]) for b in multi
                           if y0 - 2 <= b[1] and b[3] <= y1 + 2
                           and min(x1, b[2]) - max(x0, b[0]) >= (b[2] - b[0]) / 2)
            if any(later[0] >= first[1] for first, later in pairwise(inner)):
                continue
        out.append(ln)
    return out
