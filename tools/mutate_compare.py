"""Damage DICOM headers at random and check that nothing but a clear refusal comes of it.

For each mutant (a seed file with a few header bytes changed, cut or inserted):

* ``safepacs deid`` by the engine's path and by the byte-level fast path must give the same
  report line and the same output bytes;
* no report may say "internal error" (malformed input deserves a reason a person can act on);
* with ``--archive``, ingesting it into an in-process archive may only store it or raise a
  SafepacsError (a refusal), never anything else.

Usage::

    python tools/mutate_compare.py --seed 1 --count 800            # header damage
    python tools/mutate_compare.py --seed 2 --count 800 --soft     # single-byte value changes
    python tools/mutate_compare.py --retain --archive --seeds-dir /some/dicom/folder

Seeds: pydicom's own test files under 400 kB, plus ``--seeds-dir`` files.  Exit 1 on any
finding; mutants behind a finding are kept in ``--work`` for a regression test.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from pydicom.data import get_testdata_files

from safepacs.deid import batch
from safepacs.deid.keys import Keys
from safepacs.deid.options import Options
from safepacs.errors import SafepacsError

RETAIN_MOST = dict(retain_uids=True, retain_device_identity=True, retain_patient_characteristics=True,
                   retain_long_full_dates=True, retain_institution_identity=True)


def mutate(data: bytearray, rng: random.Random, *, soft: bool) -> bytearray:
    """A few changes within the first 4 KiB after the preamble (where the header lives)."""
    for _ in range(rng.choice([1, 2, 4] if soft else [1, 1, 2, 3, 8])):
        end = min(len(data), 4096)
        if end <= 140:
            break
        at = rng.randrange(132, end)
        kind = 0.0 if soft else rng.random()
        if kind < 0.6:
            data[at] = rng.choice([rng.randrange(0x20, 0x7F), rng.randrange(0x80, 0x100), 0, 0x5C, 0x1B, 0x1E])
        elif kind < 0.75:
            data[at : at + 2] = rng.choice([0, 1, 0xFFFF, rng.randrange(1 << 16)]).to_bytes(2, "little")
        elif kind < 0.85:
            del data[at:]
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 4])))
    return data


def rounds(seeds: list[Path], count: int, rng: random.Random, work: Path, *, soft: bool) -> list[Path]:
    """Folders of mutants, at most one per seed in each: two inputs of one run never share a
    SOP Instance UID (a duplicate is refused, which would hide the comparison)."""
    folders = []
    for i in range(count):
        seed = seeds[i % len(seeds)]
        folder = work / "mutants" / f"r{i // len(seeds):04d}"
        if folder not in folders:
            folder.mkdir(parents=True)
            folders.append(folder)
        (folder / f"{i:05d}_{seed.name}").write_bytes(bytes(mutate(bytearray(seed.read_bytes()), rng, soft=soft)))
    return folders


def deid_both(folder: Path, work: Path, options: Options, keys: Keys) -> tuple[dict, dict, dict, dict]:
    out = []
    for fast in (False, True):
        target = work / ("fast" if fast else "engine")
        shutil.rmtree(target, ignore_errors=True)
        job = batch.Job(target, None, options, keys.secret, None, time.time() - 1, fast=fast)
        reports = {r.input: (r.status, r.reason, r.output) for r in batch.run(list(batch.discover(folder)), job)}
        files = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}
        out += [reports, files]
    return out[0], out[1], out[2], out[3]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=400, help="mutants (default 400)")
    ap.add_argument("--soft", action="store_true", help="single-byte value changes only")
    ap.add_argument("--retain", action="store_true", help="retain UIDs, dates, device, institution, patient traits")
    ap.add_argument("--archive", action="store_true", help="also ingest every mutant into an in-process archive")
    ap.add_argument("--seeds-dir", type=Path, action="append", default=[], help="more seed files (*.dcm, recursive)")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a new temp folder)")
    args = ap.parse_args()

    seeds = [Path(p) for p in get_testdata_files("*.dcm") if os.path.getsize(p) < 400_000]
    for folder in args.seeds_dir:
        seeds += sorted(p for p in folder.rglob("*.dcm") if p.stat().st_size < 3_000_000)
    work = args.work or Path(tempfile.mkdtemp(prefix="safepacs-mutate-"))
    options = Options(clean_pixels="never", accept_burned_in_risk=True, **(RETAIN_MOST if args.retain else {}))
    keys = Keys(os.urandom(32))
    folders = rounds(seeds, args.count, random.Random(args.seed), work, soft=args.soft)

    findings: list[str] = []
    statuses: Counter = Counter()
    for folder in folders:
        engine, engine_files, fast, fast_files = deid_both(folder, work, options, keys)
        statuses.update(v[0] for v in engine.values())
        findings += [f"report differs: {folder.name}/{name}" for name in engine if engine[name] != fast.get(name)]
        findings += [f"internal error: {folder.name}/{name} ({v[1]})" for name, v in engine.items()
                     if v[1] and "internal error" in v[1]]
        for out in sorted(set(engine_files) | set(fast_files)):
            if engine_files.get(out) != fast_files.get(out):
                inputs = [name for name, v in engine.items() if v[2] == out]
                findings.append(f"bytes differ: {folder.name}/{inputs}")
    if args.archive:
        from safepacs.archive.service import Archive

        archive, _ = Archive.create(work / "archive")
        try:
            for path in sorted(p for folder in folders for p in folder.iterdir()):
                try:
                    archive.ingest(path.read_bytes(), source="mutate")
                except SafepacsError:
                    pass
                except BaseException as exc:  # noqa: BLE001 - exactly what this looks for
                    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                        raise
                    where = traceback.extract_tb(exc.__traceback__)[-1]
                    findings.append(f"archive: {path.parent.name}/{path.name}: {type(exc).__name__} "
                                    f"at {Path(where.filename).name}:{where.lineno}")
        finally:
            archive.close()

    print(f"{args.count} mutants of {len(seeds)} seeds in {work}: {dict(statuses)}")
    for line in findings:
        print("FINDING", line)
    print(f"{len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
