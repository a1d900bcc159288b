"""Storage throughput: plain encrypted vs sealed (erasure-coded k=3, n=5) vs the ceiling.

What is compared, on the same Part 10 chest radiographs (2048x2048, synthetic, from
``safepacs.synth.burned.chest_xray``; a few distinct images repeated up to --mb):

* ceiling: AES-256-GCM of ``cryptography`` alone, in memory (encrypt every object into its
           own ciphertext, then decrypt them all), one thread and ``--streams`` threads;
           the faster of the two is the ceiling;
* plain:   the archive's blob path: ``crypto.seal_parts`` into a reused buffer (as
           ``Archive.ingest`` does) + ``LocalStore.put`` (fsynced, folder fsynced), and back
           (``get`` + ``unseal``);
* sealed:  the same + ``SplitStore`` over 5 local nodes, k=3 (zfec + SHA-256 per shard, 5
           fsynced shards), and back (read the data shards, verify, join, unseal).

Each store runs twice: one stream (one object after another), and ``--streams`` at once,
which is how the archive stores: ``serve`` ingests up to two objects per core concurrently
(``api.app``'s ingest limiter), so that is the default and the row the targets are judged
on.  Every object is durable before its ``put`` returns in both modes.

Targets (issue 8): plain store >= 50% of the ceiling, sealed >= 25%.  Run::

    .venv/bin/python benchmarks/storage.py            # 500 MB
    .venv/bin/python benchmarks/storage.py --quick    # 40 MB
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from safepacs.store import crypto
from safepacs.store.blobs import BlobStore, LocalStore, new_names
from safepacs.store.split import SplitStore
from safepacs.synth.burned import chest_xray


def radiographs(distinct: int) -> list[bytes]:
    out = []
    for seed in range(distinct):
        img = chest_xray(seed)
        fp = io.BytesIO()
        img.dataset.save_as(fp, enforce_file_format=True)
        out.append(fp.getvalue())
    return out


def _run(streams: int, job: Callable[[int], object], count: int) -> tuple[float, list[object]]:
    t = time.perf_counter()
    if streams == 1:
        out = [job(i) for i in range(count)]
    else:
        with ThreadPoolExecutor(streams) as pool:
            out = list(pool.map(job, range(count)))
    return time.perf_counter() - t, out


def ceiling(objects: list[bytes], streams: int) -> tuple[float, float]:
    aead = AESGCM(AESGCM.generate_key(bit_length=256))

    def enc(i: int) -> tuple[bytes, bytes]:
        nonce = os.urandom(12)
        return nonce, aead.encrypt(nonce, objects[i], None)

    enc_s, sealed = _run(streams, enc, len(objects))
    dec_s, _ = _run(streams, lambda i: aead.decrypt(*sealed[i], None), len(objects))  # type: ignore[misc]
    return enc_s, dec_s


def cipher_alone(objects: list[bytes]) -> float:
    """AES-256-GCM into one reused buffer (``encrypt_into``): the cipher without the cost of
    fresh memory for every ciphertext, for reference (not the ceiling)."""
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    out = bytearray(max(len(o) for o in objects) + 16)
    t = time.perf_counter()
    for obj in objects:
        aead.encrypt_into(os.urandom(12), obj, None, memoryview(out)[: len(obj) + 16])
    return time.perf_counter() - t


def through(store: BlobStore, objects: list[bytes], streams: int) -> tuple[float, float]:
    key = crypto.generate_key()
    local = threading.local()
    names = [new_names("obj")[0] for _ in objects]

    def put(i: int) -> None:
        obj = objects[i]
        buffer = getattr(local, "buffer", None)
        if buffer is None or len(buffer) < crypto.sealed_size(len(obj)) + 15:
            buffer = local.buffer = bytearray(crypto.sealed_size(len(obj)) + 15)
        store.put(names[i], crypto.seal_parts(key, [obj], b"object\x00%d" % i, buffer))

    def get(i: int) -> None:
        crypto.unseal(key, store.get(names[i]), b"object\x00%d" % i)

    write, _ = _run(streams, put, len(objects))
    read, _ = _run(streams, get, len(objects))
    return write, read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=500, help="megabytes of radiographs (default 500)")
    ap.add_argument("--distinct", type=int, default=4, help="distinct images generated (default 4)")
    ap.add_argument("--streams", type=int, default=2 * (os.cpu_count() or 2),
                    help="objects stored at once, as serve ingests (default 2 per core)")
    ap.add_argument("--dir", type=Path, default=None, help="where the stores live (default: a temp dir)")
    ap.add_argument("--quick", action="store_true", help="40 MB instead of --mb")
    args = ap.parse_args()
    if args.quick:
        args.mb = 40
    base = radiographs(args.distinct)
    per = sum(len(b) for b in base) / len(base)
    count = max(1, int(args.mb * 1e6 // per))
    objects = [base[i % len(base)] for i in range(count)]
    total = sum(len(o) for o in objects) / 1e6
    root = Path(tempfile.mkdtemp(prefix="safepacs-bench-", dir=args.dir))
    rows: list[tuple[str, float, float]] = []
    alone = cipher_alone(objects)
    try:
        for streams in (1, args.streams):
            enc, dec = ceiling(objects, streams)
            rows.append((f"AES-256-GCM alone, {streams} thr", enc, dec))
        for streams in (1, args.streams):
            plain = LocalStore(root / f"plain{streams}")
            rows.append((f"plain encrypted, {streams} stream", *through(plain, objects, streams)))
        for streams in (1, args.streams):
            split = SplitStore([LocalStore(root / f"node{streams}.{i}") for i in range(5)], 3)
            rows.append((f"sealed k=3 n=5, {streams} stream", *through(split, objects, streams)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    enc = min(rows[0][1], rows[1][1])  # the ceiling: the faster of the two
    dec = min(rows[0][2], rows[1][2])
    print(f"{count} chest radiographs ({len(base)} distinct, {per / 1e6:.1f} MB each), {total:.0f} MB; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'':32} {'store MB/s':>11} {'read MB/s':>10} {'store/ceiling':>14} {'read/ceiling':>13}")
    for label, w, r in rows:
        print(f"{label:32} {total / w:11.0f} {total / r:10.0f} {enc / w:14.0%} {dec / r:13.0%}")
    print(f"for reference, AES-256-GCM into one reused buffer (encrypt_into): {total / alone:.0f} MB/s "
          "(the ceiling rows also pay for fresh memory for every ciphertext; the stores reuse buffers)")
    print(f"ceiling: the faster AES-256-GCM row; targets, judged on the {args.streams}-stream rows (how "
          "serve ingests): plain store >= 50% of the ceiling, sealed store >= 25%")


if __name__ == "__main__":
    main()
