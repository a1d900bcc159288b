"""Rendering at request time: what each access level costs, and the watermark's robustness.

What it measures, in-process on one core, on synthetic 2048x2048 16-bit chest X-rays
(``safepacs.synth.pixels.radiograph``, 12-16 bits stored, BurnedInAnnotation NO), each put
through the archive's door (``safepacs.archive.door``) to get the stored object and its
identity delta as the archive holds them (plaintext: decryption is the archive's cost and
the same for every level):

* **per-level render** p50/p99 ms of ``render_instance`` (identified with watermark and
  private mark, pseudonymised with watermark, anonymised, deidentified) against serving the
  stored bytes as they are (a ``bytes`` copy), and the difference at p50 (target: under
  60 ms for identified and pseudonymised);
* **rendered PNG/JPEG**: window to 8 bits + mark + encode (``safepacs.render.display``)
  against Pillow encoding the same 8-bit image alone (target: within 1.5x);
* **watermark robustness**: ``--trials`` marked images (a new image and serial each) per
  attack (JPEG q75, resize to half, crop to 70% of the area at a random offset, a random
  window/level to 8 bits), the share traced back to the right serial, wrong serials named
  (must be 0), and the PSNR on the 16-bit data (against the image's range and 2^bits-1).

The HTTP half (WADO-RS through the server) is added where the read paths are wired.

Usage::

    .venv/bin/python benchmarks/render.py                   # 30 renders per level, 100 trials
    .venv/bin/python benchmarks/render.py --renders 5 --trials 5   # smoke test
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safepacs.archive import door  # noqa: E402
from safepacs.deid.keys import Keys  # noqa: E402
from safepacs.deid.options import Options  # noqa: E402
from safepacs.dicom import memio  # noqa: E402
from safepacs.render.display import encode, mark_display, to_display  # noqa: E402
from safepacs.render.levels import builtin_levels  # noqa: E402
from safepacs.render.render import RenderContext, project_key, render_instance  # noqa: E402
from safepacs.render.watermark import detect, embed, psnr  # noqa: E402
from safepacs.synth import make_dataset  # noqa: E402
from safepacs.synth.pixels import radiograph  # noqa: E402
from tests.render.attacks import ATTACKS  # noqa: E402

SIZE = 2048


def chest(seed: int) -> tuple[bytes, bytes, bytes]:
    """(original, stored, delta) of one synthetic chest X-ray."""
    ds, _ = make_dataset(random.Random(seed), "CR", "ISO_IR 100", small=True)
    bits = (12, 14, 16)[seed % 3]
    ds.Rows = ds.Columns = SIZE
    ds.BitsStored, ds.HighBit = bits, bits - 1
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = radiograph(np.random.default_rng(seed), SIZE, SIZE, bits, bool(seed % 2)).tobytes()
    original = memio.to_bytes(ds)
    parsed = memio.parse(original)
    delta = door.deidentify(parsed, Options(), Keys(bytes(32)))
    return original, memio.serialise(parsed), delta.to_bytes()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def bench_levels(objects: list[tuple[bytes, bytes, bytes]], renders: int) -> None:
    ctx = RenderContext(project_key=project_key(bytes(32), "P"), serial=123456, watermark_key=bytes(range(32)))
    base = []
    for i in range(renders):
        _, stored, _ = objects[i % len(objects)]
        t = time.perf_counter()
        bytes(bytearray(stored))
        base.append(time.perf_counter() - t)
    print(f"{'level':<16}{'p50 ms':>10}{'p99 ms':>10}{'added p50':>12}")
    print(f"{'stored as is':<16}{pct(base, 50):>10.1f}{pct(base, 99):>10.1f}{'':>12}")
    for name, level in builtin_levels().items():
        times = []
        for i in range(renders):
            _, stored, delta = objects[i % len(objects)]
            t = time.perf_counter()
            render_instance(stored, delta, level, ctx)
            times.append(time.perf_counter() - t)
        added = pct(times, 50) - pct(base, 50)
        print(f"{name:<16}{pct(times, 50):>10.1f}{pct(times, 99):>10.1f}{added:>11.1f}")


def bench_rendered(objects: list[tuple[bytes, bytes, bytes]], renders: int) -> None:
    from safepacs.render.render import _read

    print(f"\n{'rendered':<10}{'pillow p50':>12}{'window+enc':>12}{'+mark p50':>11}{'ratio':>8}")
    for fmt in ("png", "jpeg"):
        alone, plain, ours = [], [], []
        for i in range(renders):
            ds = _read(objects[i % len(objects)][1])
            image = to_display(ds)
            t = time.perf_counter()
            encode(image, fmt)
            alone.append(time.perf_counter() - t)
            t = time.perf_counter()
            encode(to_display(ds), fmt)
            plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            encode(mark_display(to_display(ds), 99, bytes(32)), fmt)
            ours.append(time.perf_counter() - t)
        a, p, o = pct(alone, 50), pct(plain, 50), pct(ours, 50)
        print(f"{fmt:<10}{a:>12.1f}{p:>12.1f}{o:>11.1f}{o / a:>7.2f}x")


def bench_watermark(trials: int) -> None:
    key = bytes(range(32))
    rng = np.random.default_rng(2026)
    print(f"\n{'attack':<14}{'traced':>10}{'wrong':>8}   ({trials} trials each, {SIZE}x{SIZE})")
    psnr_range, psnr_bits = [], []
    for name, attack in ATTACKS.items():
        found = wrong = 0
        for trial in range(trials):
            bits = (12, 14, 16)[trial % 3]
            image = radiograph(np.random.default_rng(10_000 + trial), SIZE, SIZE, bits, bool(trial % 2))
            serial = int(rng.integers(1, 1 << 32))
            marked = embed(image, serial, key, bounds=(0, (1 << bits) - 1))
            if name == "jpeg75":
                psnr_range.append(psnr(image, marked, float(image.max() - image.min())))
                psnr_bits.append(psnr(image, marked, float((1 << bits) - 1)))
            result = detect(attack(marked, rng), key)
            found += result is not None and result.serial == serial
            wrong += result is not None and result.serial != serial
        print(f"{name:<14}{100 * found / trials:>9.0f}%{wrong:>8}")
    if psnr_range:
        print(f"PSNR 16-bit: min {min(psnr_range):.1f} dB against the image range, "
              f"min {min(psnr_bits):.1f} dB against 2^bits-1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--renders", type=int, default=30)
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    objects = [chest(seed) for seed in range(3)]
    print(f"render_instance on {SIZE}x{SIZE} 16-bit chest X-rays ({len(objects[0][1]) >> 20} MB each), one core")
    bench_levels(objects, args.renders)
    bench_rendered(objects, args.renders)
    bench_watermark(args.trials)


if __name__ == "__main__":
    main()
