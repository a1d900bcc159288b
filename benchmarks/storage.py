"""Storage throughput: plain encrypted vs sealed (erasure-coded k=3, n=5) vs the ceiling.

What is compared, on the same Part 10 chest radiographs (2048x2048, synthetic, from
``safepacs.synth.burned.chest_xray``; a few distinct images repeated up to --mb):

* ceiling: AES-256-GCM of ``cryptography`` alone, in memory (encrypt, then decrypt);
* plain:   the archive's blob path: ``crypto.seal`` + ``LocalStore.put`` (fsync), and back
           (``get`` + ``unseal``);
* sealed:  ``crypto.seal`` + ``SplitStore`` over 5 local nodes, k=3 (zfec + SHA-256 per
           shard, 5 fsynced shards), and back (read all shards, verify, decode, unseal).

Targets (issue 8): plain >= 50% of the ceiling, sealed >= 25%.  Run::

    .venv/bin/python benchmarks/storage.py            # 500 MB
    .venv/bin/python benchmarks/storage.py --quick    # 40 MB
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from safepacs.store import crypto
from safepacs.store.blobs import LocalStore, new_names
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


def ceiling(objects: list[bytes]) -> tuple[float, float]:
    key = AESGCM.generate_key(bit_length=256)
    aead = AESGCM(key)
    t = time.perf_counter()
    sealed = []
    for obj in objects:
        nonce = os.urandom(12)
        sealed.append((nonce, aead.encrypt(nonce, obj, None)))
    enc = time.perf_counter() - t
    t = time.perf_counter()
    for nonce, ct in sealed:
        aead.decrypt(nonce, ct, None)
    return enc, time.perf_counter() - t


def through(store, objects: list[bytes]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    key = crypto.generate_key()
    names = []
    t = time.perf_counter()
    for i, obj in enumerate(objects):
        (name,) = new_names("obj")
        store.put(name, crypto.seal(key, obj, b"object\x00%d" % i))
        names.append(name)
    write = time.perf_counter() - t
    t = time.perf_counter()
    for i, name in enumerate(names):
        crypto.unseal(key, store.get(name), b"object\x00%d" % i)
    return write, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=500, help="megabytes of radiographs (default 500)")
    ap.add_argument("--distinct", type=int, default=4, help="distinct images generated (default 4)")
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
    try:
        enc, dec = ceiling(objects)
        plain_w, plain_r = through(LocalStore(root / "plain"), objects)
        split = SplitStore([LocalStore(root / f"node{i}") for i in range(5)], 3)
        sealed_w, sealed_r = through(split, objects)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{count} chest radiographs ({len(base)} distinct, {per / 1e6:.1f} MB each), {total:.0f} MB, one thread")
    rows = [("AES-256-GCM alone (ceiling)", enc, dec), ("plain encrypted store", plain_w, plain_r),
            ("sealed k=3 n=5 store", sealed_w, sealed_r)]
    print(f"{'':32} {'store MB/s':>11} {'read MB/s':>10} {'store/ceiling':>14} {'read/ceiling':>13}")
    for label, w, r in rows:
        print(f"{label:32} {total / w:11.0f} {total / r:10.0f} {enc / w:14.0%} {dec / r:13.0%}")
    print("targets: plain store >= 50% of the ceiling, sealed store >= 25%")


if __name__ == "__main__":
    main()
