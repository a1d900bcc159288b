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
  against Pillow encoding the same 8-bit image alone, one call on one thread (target: within
  1.5x).  safepacs codes a large grey JPEG as two strips on two threads (one standard JPEG,
  the same pixels once decoded), so on a machine with a free second core its JPEG column can
  come out below Pillow's;
* **watermark robustness**: ``--trials`` marked images (a new image and serial each) per
  attack (JPEG q75, resize to half, crop to 70% of the area at a random offset, a random
  window/level to 8 bits), the share traced back to the right serial, wrong serials named
  (must be 0), and the PSNR on the 16-bit data (against the image's range and 2^bits-1).

The HTTP half (``--part http``) goes through one ``safepacs serve`` process on loopback:

* **WADO-RS instance retrieve** p50/p99 ms per reader, sequential keep-alive GETs of the
  chest X-rays stored in a fresh archive: a service account (the stored de-identified object
  served as is: the baseline), a clinician with care (identified: delta re-applied,
  watermark, private mark), a researcher in project P (pseudonymised, watermarked) and a third
  party with a grant (anonymised), with the server's sealed render cache on (what repeated
  reads cost) and off (``SAFEPACS_RENDER_CACHE_MB=0``: every read renders);
* **WADO-RS rendered** PNG and JPEG p50 for the clinician (marked) and the service account
  (unmarked) against Pillow alone encoding the same 8-bit image in this process.

Usage::

    .venv/bin/python benchmarks/render.py                   # 30 renders per level, 100 trials
    .venv/bin/python benchmarks/render.py --renders 5 --trials 5   # smoke test
    .venv/bin/python benchmarks/render.py --part http --retrieves 30
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


def pillow(image: np.ndarray, fmt: str, quality: int = 90) -> bytes:
    """The baseline: Pillow alone encoding the 8-bit image (PNG fast, JPEG at the route's
    default quality), one call on one thread."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(image, "RGB" if image.ndim == 3 else "L")
    if fmt == "jpeg":
        img.save(buf, "JPEG", quality=quality)
    else:
        img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def bench_rendered(objects: list[tuple[bytes, bytes, bytes]], renders: int) -> None:
    from safepacs.render.render import _read

    print(f"\n{'rendered':<10}{'pillow p50':>12}{'window+enc':>12}{'+mark p50':>11}{'ratio':>8}"
          f"{'cached+mark':>13}{'ratio':>8}")
    for fmt in ("png", "jpeg"):
        alone, plain, ours, cached = [], [], [], []
        for i in range(renders):
            ds = _read(objects[i % len(objects)][1])
            image = to_display(ds)
            t = time.perf_counter()
            pillow(image, fmt)
            alone.append(time.perf_counter() - t)
            t = time.perf_counter()
            encode(to_display(ds), fmt)
            plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            encode(mark_display(to_display(ds), 99, bytes(32)), fmt)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()  # the archive caches the 8-bit view (sealed) before the mark
            encode(mark_display(image, 99, bytes(32)), fmt)
            cached.append(time.perf_counter() - t)
        a, p, o, c = pct(alone, 50), pct(plain, 50), pct(ours, 50), pct(cached, 50)
        print(f"{fmt:<10}{a:>12.1f}{p:>12.1f}{o:>11.1f}{o / a:>7.2f}x{c:>13.1f}{c / a:>7.2f}x")


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


def _site(root: Path, objects: list[tuple[bytes, bytes, bytes]]) -> dict:
    """A fresh archive holding the chest X-rays, and one signed-in reader per level."""
    from datetime import UTC, datetime, timedelta

    from safepacs.archive.service import Archive
    from tests.people import admin, clinician, person

    archive, _ = Archive.create(root / "data")
    try:
        stored = [archive.ingest(original, source="bench") for original, _, _ in objects]
        studies = sorted({s.study_uid for s in stored})
        sec = admin(archive)
        _, doc = clinician(archive, "bench-doc")
        res, res_token = person(archive, "bench-res", "researcher")
        project = archive.access.grants.create_project(
            sec, "P", "benchmark", datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1))
        archive.access.grants.add_member(sec, project.id, res.account_id)
        archive.access.grants.add_cohort(sec, project.id, study_uids=studies)
        tp, tp_token = person(archive, "bench-tp", "third_party")
        archive.access.grants.create_grant(sec, tp.account_id, studies)
        readers = {"stored as is": (None, archive.create_token("bench-svc")), "identified": (None, doc),
                   "pseudonymised": (res, res_token), "anonymised": (tp, tp_token)}
        urls = {}
        for name, (who, token) in readers.items():
            paths = []
            for s in stored:
                ids = (s.study_uid, s.series_uid, s.sop_instance_uid)
                if who is not None:
                    ids = tuple(archive.masking.outward(who, u) for u in ids)
                paths.append("/dicomweb/studies/{}/series/{}/instances/{}".format(*ids))
            urls[name] = (token, paths)
    finally:
        archive.close()
    return urls


def bench_http(objects: list[tuple[bytes, bytes, bytes]], retrieves: int) -> None:
    import os
    import tempfile

    import httpx

    from tests.server_harness import Server, configure

    root = Path(tempfile.mkdtemp(prefix="safepacs-render-bench-"))
    urls = _site(root, objects)
    http_port, dicom_port = configure(root / "data", None)
    print(f"\nWADO-RS instance retrieve through `safepacs serve` ({len(objects)} chest X-rays, "
          f"{retrieves} sequential GETs per reader)")
    for cache in ("on", "off"):
        server = Server(root / "data", http_port, dicom_port)
        old = os.environ.get("SAFEPACS_RENDER_CACHE_MB")
        os.environ["SAFEPACS_RENDER_CACHE_MB"] = "512" if cache == "on" else "0"
        try:
            server.start()
        finally:
            if old is None:
                os.environ.pop("SAFEPACS_RENDER_CACHE_MB")
            else:
                os.environ["SAFEPACS_RENDER_CACHE_MB"] = old
        try:
            print(f"\nrender cache {cache}")
            print(f"{'reader':<16}{'p50 ms':>10}{'p99 ms':>10}{'added p50':>12}{'MB':>6}")
            base = None
            for name, (token, paths) in urls.items():
                with httpx.Client(base_url=server.url, timeout=120,
                                  headers={"Authorization": f"Bearer {token}"}) as c:
                    times, size = [], 0
                    for i in range(retrieves + len(paths)):
                        t = time.perf_counter()
                        r = c.get(paths[i % len(paths)])
                        elapsed = time.perf_counter() - t
                        assert r.status_code == 200, (name, r.status_code)
                        size = len(r.content)
                        if i >= len(paths) or cache == "off":  # cache on: after one warm-up round
                            times.append(elapsed)
                p50 = pct(times, 50)
                base = p50 if base is None else base
                added = "" if name == "stored as is" else f"{p50 - base:11.1f}"
                print(f"{name:<16}{p50:>10.1f}{pct(times, 99):>10.1f}{added:>12}{size / 1e6:>6.1f}")
            if cache == "on":
                _bench_http_rendered(server.url, urls, objects, retrieves)
        finally:
            server.stop()
    import shutil

    shutil.rmtree(root, ignore_errors=True)


def _bench_http_rendered(url: str, urls: dict, objects: list[tuple[bytes, bytes, bytes]], retrieves: int) -> None:
    import httpx

    from safepacs.render.render import _read

    images = [to_display(_read(o[1])) for o in objects]
    print(f"\n{'rendered':<10}{'reader':<16}{'p50 ms':>10}{'p99 ms':>10}{'pillow p50':>12}{'ratio':>8}")
    for fmt in ("png", "jpeg"):
        alone = []
        for i in range(retrieves):
            t = time.perf_counter()
            pillow(images[i % len(images)], fmt)
            alone.append(time.perf_counter() - t)
        for name in ("stored as is", "identified"):
            token, paths = urls[name]
            with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {token}",
                                                                  "Accept": f"image/{fmt}"}) as c:
                times = []
                for i in range(retrieves + len(paths)):
                    t = time.perf_counter()
                    r = c.get(paths[i % len(paths)] + "/rendered")
                    elapsed = time.perf_counter() - t
                    assert r.status_code == 200, (name, fmt, r.status_code)
                    if i >= len(paths):
                        times.append(elapsed)
            a, p = pct(alone, 50), pct(times, 50)
            print(f"{fmt:<10}{name:<16}{p:>10.1f}{pct(times, 99):>10.1f}{a:>12.1f}{p / a:>7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--renders", type=int, default=30)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--retrieves", type=int, default=30)
    parser.add_argument("--part", choices=("all", "inprocess", "http"), default="all")
    args = parser.parse_args()
    objects = [chest(seed) for seed in range(3)]
    if args.part in ("all", "inprocess"):
        print(f"render_instance on {SIZE}x{SIZE} 16-bit chest X-rays ({len(objects[0][1]) >> 20} MB each), one core")
        bench_levels(objects, args.renders)
        bench_rendered(objects, args.renders)
        bench_watermark(args.trials)
    if args.part in ("all", "http"):
        bench_http(objects, args.retrieves)


if __name__ == "__main__":
    main()
