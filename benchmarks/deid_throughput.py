"""Side-by-side throughput of DICOM header de-identification, on one synthetic corpus.

What it measures
----------------
One run, one corpus (``safepacs.synth.generate``, realistic sizes: 2048x2048 16-bit CR,
3000x2500 DX, 512x512 CT/MR, US, multi-frame XA...).  Every tool gets the same input tree
(only the ``.dcm`` files: the answer key is moved aside, because some tools choke on a
non-DICOM file) and writes to its own empty output folder.  For each tool it records:

* wall time of the whole command (interpreter start-up included: that is what a user pays),
* files/s and MB/s (input files and input bytes over wall time),
* CPU time, user and system apart, of the process and every descendant (GNU time),
* CPU time the rest of the machine used meanwhile (other jobs, kernel write-back),
* peak RSS of the process tree (the sum over the tree, polled from /proc every 20 ms, or
  the largest single process from GNU time if larger),
* how many files it wrote, so that a tool that silently skipped files is visible.

The rows, in the order they run:

1. ``cp -r`` -- the I/O floor: nothing can be faster than copying the bytes.  It runs once
   untimed first, to pull the corpus into the page cache (dropping the cache needs root, so
   instead every tool reads a *warm* cache: the numbers are CPU + write cost, not disk reads).
2. pydicom read + write, no change: ``dcmread`` + ``save_as`` in a Python loop.  This is the
   floor for any pure-pydicom tool: it reads every pixel byte into Python objects (without
   decoding them) and writes them back.
3. ``safepacs deid`` with 1 and 2 workers.  safepacs parses only the header
   (``stop_before_pixels``), and streams the pixel bytes from the input file to the output
   file in the kernel (``copy_file_range``): pixel data are neither decoded nor copied through
   Python, which is why it can beat a plain pydicom read + write.
4. dicognito (``python -m dicognito``): pydicom-based, reads the whole dataset.
5. pydicom's ``deid`` (``deid identifiers --action all``): first reads every file to *get*
   identifiers, then reads every file again to *put* them, holding the lot in memory.
   It flattens the output tree (files with the same name overwrite one another), so it is
   run with ``--overwrite`` (otherwise it would skip writing the colliding files and look
   faster than it is); its output count is therefore below the input count by design.
6. GDCM ``gdcmanon`` (C++, PS3.15 basic profile, encrypts the originals into the file).
7. dicom-anonymizer, per folder (it does not recurse), when installed.

safepacs' own modules are compiled to bytecode before the first run, as a regular
(non-editable) install has them and as pip installed the peers: an editable install where
``PYTHONDONTWRITEBYTECODE`` is set would otherwise compile them again in every run.

Between runs the previous output is counted, deleted and ``sync``-ed (untimed), so that one
tool's write-back does not slow the next.  Timings do not include ``fsync`` of the outputs.

Noise.  On a small shared machine other jobs move wall times by 2x or more.  So the tools
run in rounds (``--repeat``, default 3: every tool once per round, so that load falls on all
alike) and the fastest run of each is reported, with every run's wall time beside it; before
each run the script waits (``--wait-idle``) for the machine to go quiet; ``--nice -10`` (as
root) lifts the tools above other jobs.  The CPU-time ratios printed under the targets are far
less sensitive to other load than the wall-time ones and are the better guide when the
"cores busy elsewhere" column is well above 0.  The worker-scaling ratio needs free cores and
cannot be judged on a busy machine.

Then the ratios the project targets: safepacs(1 worker) files/s vs dicognito (>= 3x),
vs pydicom read + write (faster), vs gdcmanon (at least as fast), and safepacs(2)/(1) (>= 1.7).
Beside them, safepacs' start-up: ``safepacs deid`` of one small file, best of three, the
time every run pays before its first file (interpreter, pydicom with its pixel plugins, the
CLI) and that workers do not divide; and the ceiling it leaves for two workers over one,
1-worker time / (start-up + the rest / 2).

Usage::

    .venv/bin/python benchmarks/deid_throughput.py                # 500 files, about 2.7 GB
    .venv/bin/python benchmarks/deid_throughput.py --count 60     # smoke test
    .venv/bin/python benchmarks/deid_throughput.py --corpus DIR --skip deid --keep
    .venv/bin/python benchmarks/deid_throughput.py --nice -10 --json results.json

Needs the ``[bench]`` extra (dicognito, deid, psutil) and Debian ``libgdcm-tools``,
``openssl``; a tool that is missing is reported as skipped.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:
    import psutil
except ImportError:  # pragma: no cover - the [bench] extra provides it
    psutil = None

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ANSWER_KEY = "answer_key.json"

TOOLS = (
    "cp",
    "cp2",
    "pydicom",
    "safepacs1",
    "safepacs2",
    "dicognito",
    "gdcmanon",
    "dicom-anonymizer",
    "deid",
)

#: pydicom read + write with no change, run in its own interpreter like every other tool.
PYDICOM_LOOP = r"""
import os, sys
from pathlib import Path
from pydicom import dcmread
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
made = set()
for dirpath, _dirs, files in os.walk(src):
    for name in sorted(files):
        path = Path(dirpath) / name
        out = dst / path.relative_to(src)
        if out.parent not in made:
            out.parent.mkdir(parents=True, exist_ok=True)
            made.add(out.parent)
        ds = dcmread(path)
        ds.save_as(out)
"""


@dataclass
class Run:
    """One measured command (or a sequence of commands, for per-folder tools)."""

    name: str
    what: str
    wall: float = 0.0
    user: float = 0.0  # CPU s in user space, the process tree
    sys: float = 0.0  # CPU s in the kernel on its behalf (page cache, copies, file system)
    others_cpu: float | None = None  # CPU s the rest of the machine used meanwhile
    walls: list[float] = field(default_factory=list)  # every repeat, for the spread

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    peak_rss: int = 0  # bytes, sum over the process tree
    out_files: int | None = None
    returncode: int | None = None
    status: str = "ok"  # ok, failed, timeout, skipped
    note: str = ""
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- measuring


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _children(pid: int) -> list[int]:
    """Child PIDs from the kernel's own list (/proc/PID/task/TID/children)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                out += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            pass
    return out


def _tree_rss(proc) -> int:
    """RSS summed over ``proc`` and its descendants.

    Polled every 20 ms during a timed run, so it must cost next to nothing: psutil's
    ``children(recursive=True)`` reads every process of the machine each time (1.5 ms a
    poll here, about 7% of one of the two CPUs), which is CPU taken from a two-worker run
    but not from a one-worker run (it has a core to spare) and so biased the scaling ratio.
    The kernel keeps each task's children; reading those and ``statm`` is a few files.
    """
    if not os.path.isdir("/proc/self/task"):
        return _tree_rss_psutil(proc)
    total, todo, seen = 0, [proc.pid], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue
        todo += _children(pid)
    return total


def _tree_rss_psutil(proc) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def _busy() -> float | None:
    """CPU seconds this machine has spent busy (all CPUs, all processes, kernel included).

    Time stolen by the hypervisor is not counted: it is not work done here.
    """
    if psutil is None:
        return None
    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))


def wait_quiet(limit: float, threshold: float = 15.0) -> float:
    """Wait (up to ``limit`` s) until the machine is under ``threshold`` % busy; return that %.

    Other people's test runs on a 2-core machine change the numbers a lot; this waits them
    out when it can, and the table shows how much CPU others took during each run anyway.
    """
    if psutil is None or limit <= 0:
        return 0.0
    end = time.monotonic() + limit
    busy = psutil.cpu_percent(interval=1.0)
    while busy > threshold and time.monotonic() < end:
        busy = psutil.cpu_percent(interval=2.0)
    return busy


def measure(cmds: list[list[str]], log: Path, timeout: float, nice: int = 0) -> Run:
    """Run ``cmds`` one after the other; wall, CPU and peak RSS over all of them.

    Each command runs under ``/usr/bin/time`` (GNU time), which reports the CPU time and the
    largest RSS of the command and every descendant it waited for.  That figure comes from a
    small parent: measured from this (large) Python process, ``ru_maxrss`` would include the
    parent's own RSS, which the child inherits between fork and exec.  The process tree is
    also polled (see ``_tree_rss``), and the larger figure of the two (sum over the tree, versus
    largest single process) is kept.
    """
    run = Run("", "")
    deadline = time.monotonic() + timeout
    stats = log.with_suffix(".time")
    with open(log, "ab") as fh:
        busy0 = _busy()
        start = time.perf_counter()
        for cmd in cmds:
            fh.write(("$ " + " ".join(cmd) + "\n").encode())
            fh.flush()
            full = [TIME, "-f", "%U %S %M", "-o", str(stats), *cmd] if TIME else cmd
            if nice:
                full = ["nice", "-n", str(nice), *full]
            proc = subprocess.Popen(
                full,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            ps = psutil.Process(proc.pid) if psutil is not None else None
            while proc.poll() is None:
                if ps is not None:
                    run.peak_rss = max(run.peak_rss, _tree_rss(ps))
                if time.monotonic() > deadline:
                    os.killpg(proc.pid, signal.SIGKILL)  # the session this Popen started
                    proc.wait()
                    run.status = "timeout"
                    break
                time.sleep(0.02)
            run.returncode = proc.returncode
            if TIME and run.status != "timeout":
                try:
                    user, system, maxrss_kib = stats.read_text().split()[-3:]
                    run.user += float(user)
                    run.sys += float(system)
                    run.peak_rss = max(run.peak_rss, int(maxrss_kib) * 1024)
                except (OSError, ValueError):
                    pass
            if run.status == "timeout" or proc.returncode != 0:
                break
        run.wall = time.perf_counter() - start
        busy1 = _busy()
        if busy0 is not None and busy1 is not None:
            run.others_cpu = max(0.0, busy1 - busy0 - run.cpu)
    return run


def startup(safepacs_cmd: list[str], inp: Path, out: Path, log: Path, args) -> float | None:
    """Wall time of ``safepacs deid`` on the corpus' smallest file, best of three: what every
    run pays before its first file (interpreter, imports, key, output folder) and what no
    number of workers divides.  None when it failed."""
    one = min((f for f in inp.rglob("*.dcm")), key=lambda f: f.stat().st_size, default=None)
    if one is None:
        return None
    cmd = [safepacs_cmd[0], "deid", str(one), str(out / "one"), *safepacs_cmd[4:-2]]
    best = None
    for _ in range(3):
        shutil.rmtree(out, ignore_errors=True)
        r = measure([cmd], log, args.timeout, nice=args.nice)
        if r.status == "timeout" or r.returncode != 0:
            return None
        best = r.wall if best is None else min(best, r.wall)
    shutil.rmtree(out, ignore_errors=True)
    return best


def compile_safepacs() -> None:
    """Compile safepacs' modules as pip compiles those of every package it installs (an
    editable install is left uncompiled); safepacs is then timed as users run it."""
    spec = importlib.util.find_spec("safepacs")
    if spec is None or not spec.submodule_search_locations:
        return
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *spec.submodule_search_locations],
        stdout=subprocess.DEVNULL, check=False,
    )


def count_files(folder: Path) -> int:
    n = 0
    for _dirpath, _dirs, files in os.walk(folder):
        n += sum(1 for f in files if not (f.startswith("safepacs-") and f.endswith(".jsonl")))
    return n


def sync() -> None:
    os.sync()


# --------------------------------------------------------------------------- the corpus


def prepare_corpus(args, work: Path) -> Path:
    """The input tree: ``.dcm`` files only (answer key moved aside)."""
    inp = work / "in"
    if args.corpus:
        src = Path(args.corpus).resolve()
        print(f"linking the .dcm files of {src} into {inp} ...", flush=True)
        for dirpath, _dirs, files in os.walk(src):
            for name in files:
                if not name.lower().endswith(".dcm"):
                    continue
                s = Path(dirpath) / name
                d = inp / s.relative_to(src)
                d.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(s, d)
                except OSError:
                    shutil.copy2(s, d)
        if (src / ANSWER_KEY).exists():
            shutil.copy2(src / ANSWER_KEY, work / ANSWER_KEY)
        return inp
    from safepacs.synth import ANSWER_KEY_NAME, generate

    print(f"generating {args.count} files (seed {args.seed}) into {inp} ...", flush=True)
    t0 = time.perf_counter()
    last = [0.0]

    def progress(done: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 15 or done == args.count:
            last[0] = now
            print(f"  {done}/{args.count} ({now - t0:.0f} s)", flush=True)

    generate(inp, args.count, args.seed, small=False, progress=progress)
    shutil.move(inp / ANSWER_KEY_NAME, work / ANSWER_KEY)
    return inp


def describe_corpus(inp: Path) -> tuple[int, int, str, list[str]]:
    """(files, bytes, one-line mix, detail lines) from the headers."""
    from pydicom import dcmread
    from pydicom.uid import UID

    groups: collections.Counter = collections.Counter()
    sizes: collections.Counter = collections.Counter()
    tsyntax: collections.Counter = collections.Counter()
    n = total = 0
    for dirpath, _dirs, files in os.walk(inp):
        for name in files:
            p = Path(dirpath) / name
            size = p.stat().st_size
            n += 1
            total += size
            try:
                ds = dcmread(
                    p,
                    stop_before_pixels=True,
                    specific_tags=[
                        "Modality",
                        "Rows",
                        "Columns",
                        "NumberOfFrames",
                        "BitsAllocated",
                        "SamplesPerPixel",
                    ],
                )
                frames = int(ds.get("NumberOfFrames", 1) or 1)
                key = (
                    str(ds.get("Modality", "?")),
                    f"{ds.get('Columns', '?')}x{ds.get('Rows', '?')}",
                    f"{ds.get('BitsAllocated', '?')}b"
                    + ("x3" if ds.get("SamplesPerPixel", 1) == 3 else ""),
                    f"{frames}f" if frames > 1 else "",
                )
                ts = UID(ds.file_meta.TransferSyntaxUID)
                tsyntax[ts.name if ts.is_transfer_syntax else str(ts)] += 1
            except Exception as exc:  # noqa: BLE001 - describe, never stop
                key = ("unreadable", exc.__class__.__name__, "", "")
            groups[key] += 1
            sizes[key] += size
    by_mod: collections.Counter = collections.Counter()
    for key, c in groups.items():
        by_mod[key[0]] += c
    mix = ", ".join(f"{m} {c}" for m, c in sorted(by_mod.items(), key=lambda kv: -kv[1]))
    detail = [
        f"{k[0]:<4} {k[1]:>10} {k[2]:<5} {k[3]:<4} x{c:<4} {sizes[k] / 1e6:8.1f} MB"
        for k, c in sorted(groups.items(), key=lambda kv: -sizes[kv[0]])
    ]
    detail.append("transfer syntaxes: " + ", ".join(f"{t} {c}" for t, c in tsyntax.most_common()))
    return n, total, mix, detail


# --------------------------------------------------------------------------- the tools


def which(name: str) -> str | None:
    cand = VENV_BIN / name
    if cand.exists() and os.access(cand, os.X_OK):
        return str(cand)
    return shutil.which(name)


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def leaf_folders(inp: Path) -> list[Path]:
    return sorted({Path(d) for d, _s, files in os.walk(inp) if files})


def two_streams(inp: Path, out: Path) -> list[list[str]] | None:
    """One command copying the two halves of the corpus with two ``cp -r`` at once: what two
    processes get from this machine for the same bytes.  Where that is no faster than one
    ``cp -r``, the copy does not scale and caps what a second worker can add."""
    entries = sorted(str(p) for p in inp.iterdir())
    if len(entries) < 2:
        return None
    half = len(entries) // 2
    first, second = f'"${{@:1:{half}}}"', f'"${{@:{half + 1}}}"'
    script = f'mkdir -p "$0" && {{ cp -r {first} "$0" & cp -r {second} "$0" & wait; }}'
    return [["bash", "-c", script, str(out), *entries]]


def plan(
    args, work: Path, inp: Path, out: Path
) -> list[tuple[str, str, list[list[str]] | None, str]]:
    """(name, description, commands or None when unavailable, why unavailable)."""
    py = sys.executable
    key = work / "bench.key"
    cert = work / "cert.pem"
    safepacs = which("safepacs")
    rows: list[tuple[str, str, list[list[str]] | None, str]] = []
    rows.append(("cp", "cp -r (I/O floor)", [["cp", "-r", str(inp), str(out)]], ""))
    rows.append(("cp2", "cp -r, two halves at once (2-stream floor)", two_streams(inp, out),
                 "the corpus has fewer than two top-level entries"))
    rows.append(
        (
            "pydicom",
            "pydicom dcmread+save_as, no change",
            [[py, "-c", PYDICOM_LOOP, str(inp), str(out)]],
            "",
        )
    )
    for w in (1, 2):
        cmd = (
            None
            if safepacs is None
            else [
                [
                    safepacs,
                    "deid",
                    str(inp),
                    str(out),
                    "--key-file",
                    str(key),
                    "--no-clean-pixels",  # header de-identification, like the peers
                    "--accept-burned-in-risk",
                    "--workers",
                    str(w),
                ]
            ]
        )
        rows.append((f"safepacs{w}", f"safepacs deid --workers {w}", cmd, "safepacs CLI not found"))
    rows.append(
        (
            "dicognito",
            "dicognito (python -m dicognito)",
            [[py, "-m", "dicognito", "--quiet", "-o", str(out), str(inp)]]
            if has_module("dicognito")
            else None,
            "dicognito not installed (pip install dicognito)",
        )
    )
    gdcm = which("gdcmanon")
    rows.append(
        (
            "gdcmanon",
            "gdcmanon -e (GDCM, C++)",
            [[gdcm, "-e", "-c", str(cert), "-r", "-i", str(inp), "-o", str(out)]]
            if gdcm and cert.exists()
            else None,
            "gdcmanon not found (apt-get install libgdcm-tools)"
            if not gdcm
            else "no certificate (openssl failed)",
        )
    )
    anon = which("dicom-anonymizer")
    if anon:
        cmds = []
        for folder in leaf_folders(inp):
            rel = folder.relative_to(inp)
            cmds.append(["mkdir", "-p", str(out / rel)])
            cmds.append([anon, str(folder), str(out / rel)])
        rows.append(("dicom-anonymizer", "dicom-anonymizer, once per folder", cmds, ""))
    else:
        rows.append(("dicom-anonymizer", "dicom-anonymizer", None, "not installed"))
    deid = which("deid")
    rows.append(
        (
            "deid",
            "pydicom deid identifiers --action all",
            [
                ["mkdir", "-p", str(out)],
                [
                    deid,
                    "--quiet",
                    "--overwrite",
                    "--outfolder",
                    str(out),
                    "identifiers",
                    "--action",
                    "all",
                    "--input",
                    str(inp),
                ],
            ]
            if deid
            else None,
            "deid not installed (pip install deid)",
        )
    )
    return rows


def make_cert(work: Path) -> None:
    if not shutil.which("openssl"):
        return
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(work / "key.pem"),
            "-out",
            str(work / "cert.pem"),
            "-subj",
            "/CN=safepacs-bench",
            "-days",
            "2",
        ],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def report_of(out: Path) -> Path:
    """Where ``safepacs deid`` put its report for the output folder ``out`` (beside it)."""
    from safepacs.deid.batch import default_report

    return default_report(out)


def safepacs_report(out: Path) -> tuple[collections.Counter, collections.Counter]:
    statuses: collections.Counter = collections.Counter()
    reasons: collections.Counter = collections.Counter()
    path = report_of(out)
    if not path.exists():
        return statuses, reasons
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        statuses[rec.get("status")] += 1
        if rec.get("reason"):
            reasons[rec["reason"]] += 1
    return statuses, reasons


def tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--count", type=int, default=500, help="files to generate (default 500, ~2.7 GB)"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--workdir",
        type=Path,
        help="where corpus and outputs go (default: a temp dir in /tmp).  They share it on "
        "purpose: safepacs copies pixel bytes with copy_file_range, which falls back to "
        "read/write between two file systems (a --corpus elsewhere is hard-linked or copied in)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work dir (and the last output)")
    ap.add_argument(
        "--corpus", type=Path, help="reuse an existing corpus folder instead of generating one"
    )
    ap.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=TOOLS,
        metavar="TOOL",
        help=f"skip a tool (repeatable): {', '.join(TOOLS)}",
    )
    ap.add_argument(
        "--skip-deid", action="store_true", help="same as --skip deid (slow, memory-hungry)"
    )
    ap.add_argument(
        "--timeout", type=float, default=1800, help="seconds per tool before it is killed"
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per tool (default 3); the fastest is reported"
    )
    ap.add_argument(
        "--repeat-deid", action="store_true", help="repeat deid too (it is slow: once by default)"
    )
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the tools at this nice level (negative, as root, to out-prioritise other "
        "people's jobs on a shared machine)",
    )
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=15,
        help="before each run, wait up to this many seconds for other processes to go quiet "
        "(default 15)",
    )
    args = ap.parse_args(argv)
    if args.skip_deid:
        args.skip.append("deid")
    if psutil is None:
        print(
            "note: psutil missing (pip install psutil): peak RSS is the largest single process only"
        )

    if args.workdir:
        work = args.workdir.resolve()
        work.mkdir(parents=True, exist_ok=True)
        if any(work.iterdir()):
            print(f"{work} is not empty", file=sys.stderr)
            return 2
    else:
        work = Path(tempfile.mkdtemp(prefix="safepacs-bench-", dir="/tmp"))
    try:
        return _bench(args, work)
    finally:
        if args.keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _bench(args, work: Path) -> int:
    inp = prepare_corpus(args, work)
    make_cert(work)
    out = work / "out"
    logs = work / "logs"
    logs.mkdir()

    compile_safepacs()
    # Warm the page cache: the first cp -r reads everything; it is not reported as a result.
    print("warming the page cache with an untimed cp -r ...", flush=True)
    warm = measure([["cp", "-r", str(inp), str(out)]], logs / "warmup.log", args.timeout)
    shutil.rmtree(out, ignore_errors=True)
    sync()
    n_files, n_bytes, mix, detail = describe_corpus(inp)
    print(
        f"corpus: {n_files} files, {n_bytes / 1e6:.0f} MB ({mix}); "
        f"warm-up cp took {warm.wall:.1f} s"
    )

    # Rounds: every tool once per round, so that other people's load on a shared machine
    # falls on all tools alike; the fastest run of each is reported.
    results: dict[str, Run] = {}
    active = []
    for name, what, cmds, why in plan(args, work, inp, out):
        if name in args.skip:
            results[name] = Run(name, what, status="skipped", note="--skip")
        elif cmds is None:
            results[name] = Run(name, what, status="skipped", note=why)
        else:
            results[name] = Run(name, what, status="pending")
            active.append((name, what, cmds))
    walls: dict[str, list[float]] = collections.defaultdict(list)
    rounds = max(1, args.repeat)
    for rnd in range(rounds):
        for name, what, cmds in active:
            prev = results[name]
            if rnd > 0 and (
                prev.status in ("failed", "timeout") or (name == "deid" and not args.repeat_deid)
            ):
                continue
            shutil.rmtree(out, ignore_errors=True)
            report_of(out).unlink(missing_ok=True)  # not the last run's
            sync()
            busy = wait_quiet(args.wait_idle)
            print(
                f"running {what}"
                + (f" (round {rnd + 1}/{rounds})" if rounds > 1 else "")
                + (f" (machine {busy:.0f}% busy before start)" if busy > 15 else "")
                + " ...",
                flush=True,
            )
            log = logs / f"{name}.log"
            r = measure(cmds, log, args.timeout, nice=args.nice)
            r.name, r.what = name, what
            r.out_files = count_files(out) if out.exists() else 0
            if r.status == "timeout":
                r.note = f"killed after {args.timeout:.0f} s"
            elif r.returncode != 0:
                r.status = "failed" if r.out_files == 0 else "exit!=0"
                r.note = f"exit {r.returncode}"
            elif r.out_files == 0:
                r.status, r.note = "failed", "exit 0 but wrote nothing"
            if name.startswith("safepacs"):
                st, reasons = safepacs_report(out)
                r.extra = {"statuses": dict(st), "reasons": dict(reasons)}
                if st.get("rejected") or st.get("skipped"):
                    r.note = (r.note + "; " if r.note else "") + ", ".join(
                        f"{k} {v}" for k, v in st.items()
                    )
            if r.status in ("failed", "timeout", "exit!=0"):
                r.extra["log_tail"] = tail(log)
            print(
                f"  {r.wall:.1f} s, {r.out_files} files out, peak RSS {r.peak_rss / 2**20:.0f} MiB"
                + (f" [{r.status}: {r.note}]" if r.status != "ok" else ""),
                flush=True,
            )
            walls[name].append(r.wall)
            better = r.status == "ok" and (prev.status != "ok" or r.wall < prev.wall)
            if prev.status == "pending" or better:
                results[name] = r
            results[name].walls = walls[name]
    start = None
    safepacs_rows = dict((name, cmds) for name, _what, cmds in active if name == "safepacs1")
    if "safepacs1" in safepacs_rows and results["safepacs1"].status == "ok":
        print("timing safepacs start-up (a one-file run, best of 3) ...", flush=True)
        start = startup(safepacs_rows["safepacs1"][0], inp, out, logs / "startup.log", args)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "corpus": {"files": n_files, "bytes": n_bytes, "mix": mix, "detail": detail},
                    "runs": {k: asdict(v) for k, v in results.items()},
                    "safepacs_startup_s": start,
                },
                indent=2,
            )
        )
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)

    report(args, results, n_files, n_bytes, mix, detail, warm, start)
    return 0


def report(
    args,
    results: dict[str, Run],
    n_files: int,
    n_bytes: int,
    mix: str,
    detail: list[str],
    warm: Run,
    start: float | None = None,
) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    con = Console(width=190, highlight=False)
    cpu = platform.processor() or platform.machine()
    con.print()
    con.print(
        f"[bold]Header de-identification throughput[/bold] -- {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"load average now {os.getloadavg()[0]:.2f}"
    )
    src = (
        f"--corpus {args.corpus}"
        if args.corpus
        else f"safepacs.synth.generate(count={args.count}, seed={args.seed}, small=False)"
    )
    con.print(f"Corpus: {src}")
    con.print(
        f"        {n_files} files, {n_bytes / 1e6:.1f} MB, "
        f"mean {n_bytes / max(n_files, 1) / 1e6:.2f} MB/file; by modality: {mix}"
    )
    for line in detail:
        con.print(f"          {line}")
    con.print(
        f"Cache:  warm (an untimed cp -r read the corpus first, {warm.wall:.1f} s); "
        "outputs deleted + sync between runs; timings exclude fsync of outputs."
    )

    t = Table(box=box.SIMPLE_HEAVY, show_lines=False)
    for col, j in [
        ("tool", "left"),
        ("wall s", "right"),
        ("files/s", "right"),
        ("MB/s", "right"),
        ("user s", "right"),
        ("sys s", "right"),
        ("rest of machine CPU s", "right"),
        ("peak RSS MiB", "right"),
        ("files out", "right"),
        ("all runs, wall s", "left"),
        ("status / notes", "left"),
    ]:
        t.add_column(col, justify=j)
    for r in results.values():
        if r.status == "skipped":
            t.add_row(r.what, *["-"] * 9, f"skipped: {r.note}")
            continue
        fps = n_files / r.wall if r.wall else 0
        mbps = n_bytes / 1e6 / r.wall if r.wall else 0
        out_txt = f"{r.out_files}"
        if r.out_files != n_files:
            out_txt += f" (!={n_files})"
        t.add_row(
            r.what,
            f"{r.wall:.2f}",
            f"{fps:.1f}",
            f"{mbps:.0f}",
            f"{r.user:.1f}",
            f"{r.sys:.1f}",
            "?" if r.others_cpu is None else f"{r.others_cpu:.1f}",
            f"{r.peak_rss / 2**20:.0f}",
            out_txt,
            " ".join(f"{w:.1f}" for w in r.walls),
            r.status + (f": {r.note}" if r.note else ""),
        )
    con.print(t)

    def fps(name: str) -> float | None:
        r = results.get(name)
        if r is None or r.status not in ("ok", "exit!=0") or not r.wall:
            return None
        return n_files / r.wall

    targets = [
        ("safepacs(1) / dicognito", "safepacs1", "dicognito", 3.0, ">= 3"),
        ("safepacs(1) / pydicom read+write", "safepacs1", "pydicom", 1.0, "> 1 (faster)"),
        ("safepacs(1) / gdcmanon", "safepacs1", "gdcmanon", 1.0, ">= 1 (at least as fast)"),
        ("safepacs(2) / safepacs(1)", "safepacs2", "safepacs1", 1.7, ">= 1.7"),
    ]
    info = [
        ("safepacs(1) / cp -r (share of the I/O floor)", "safepacs1", "cp"),
        ("cp -r x2 / cp -r (does copying scale to 2 streams here?)", "cp2", "cp"),
        ("safepacs(2) / cp -r x2 (share of the 2-stream floor)", "safepacs2", "cp2"),
        ("cp -r / dicognito (ceiling of safepacs(1) / dicognito)", "cp", "dicognito"),
        ("cp -r / gdcmanon (ceiling of safepacs(1) / gdcmanon)", "cp", "gdcmanon"),
        ("safepacs(1) / deid", "safepacs1", "deid"),
        ("safepacs(1) / dicom-anonymizer", "safepacs1", "dicom-anonymizer"),
    ]

    def busy_elsewhere(*names: str) -> str:
        """Cores the rest of the machine kept busy, on average, during the slower-hit row."""
        vals = []
        for n in names:
            r = results.get(n)
            if r is not None and r.others_cpu is not None and r.wall:
                vals.append(r.others_cpu / r.wall)
        return f"{max(vals):.2f}" if vals else "?"

    rt = Table(box=box.SIMPLE_HEAVY, title="files/s ratios")
    for col, j in [
        ("ratio", "left"),
        ("value", "right"),
        ("target", "left"),
        ("verdict", "left"),
        ("cores busy elsewhere", "right"),
    ]:
        rt.add_column(col, justify=j)
    for label, a, b, goal, goal_txt in targets:
        fa, fb = fps(a), fps(b)
        if fa is None or fb is None:
            rt.add_row(label, "n/a", goal_txt, "n/a (a tool was skipped or failed)", "")
            continue
        v = fa / fb
        ok = v > goal if goal_txt.startswith(">") and not goal_txt.startswith(">=") else v >= goal
        rt.add_row(
            label,
            f"{v:.2f}x",
            goal_txt,
            "[green]PASS[/green]" if ok else "[red]MISS[/red]",
            busy_elsewhere(a, b),
        )
    for label, a, b in info:
        fa, fb = fps(a), fps(b)
        if fa is not None and fb is not None:
            rt.add_row(label, f"{fa / fb:.2f}x", "(info)", "", busy_elsewhere(a, b))
    one = results.get("safepacs1")
    if start is not None and one is not None and one.status == "ok" and one.wall > start:
        # Amdahl: start-up runs once whatever the workers; the rest divides at best by two
        ceiling = one.wall / (start + (one.wall - start) / 2)
        rt.add_row(f"safepacs start-up (a one-file run: {start:.2f} s of the 1-worker {one.wall:.2f} s)",
                   f"{start / one.wall:.0%}", "(info)", "", "")
        rt.add_row("ceiling of safepacs(2) / safepacs(1) with that start-up (Amdahl)",
                   f"{ceiling:.2f}x", "(info)", "", "")
    # CPU time is far less sensitive than wall time to other people's load on the machine.
    for other, label in [
        ("dicognito", "dicognito"),
        ("pydicom", "pydicom rw"),
        ("gdcmanon", "gdcmanon"),
    ]:
        ra, rb = results.get(other), results.get("safepacs1")
        if ra and rb and ra.status == "ok" and rb.status in ("ok", "exit!=0") and rb.user:
            rt.add_row(
                f"CPU (user+sys): {label} / safepacs(1)",
                f"{ra.cpu / rb.cpu:.2f}x",
                "(info)",
                "",
                "",
            )
            rt.add_row(
                f"CPU (user only): {label} / safepacs(1)",
                f"{ra.user / rb.user:.2f}x",
                "(info)",
                "",
                "",
            )
    con.print(rt)

    for r in results.values():
        if r.extra.get("reasons"):
            con.print(f"{r.what}: reasons given in the report:")
            for reason, c in sorted(r.extra["reasons"].items(), key=lambda kv: -kv[1]):
                con.print(f"    {c:5d}  {reason}")
        if r.extra.get("log_tail"):
            con.print(f"{r.what}: last lines of its output:")
            for line in r.extra["log_tail"].splitlines():
                con.print(f"    {line}", markup=False)
    con.print(
        "Notes: files/s and MB/s use the input file count and bytes.  Peak RSS: the larger of\n"
        "       the tree's RSS sum (/proc, every 20 ms; shared pages of worker processes count\n"
        "       once per process) and the largest single process (GNU time).\n"
        "       deid flattens its output tree (same-named files overwrite each other); it runs\n"
        "       with --overwrite so that every file is still written.\n"
        "       user s / sys s: CPU of the tool's process tree (GNU time).  sys is mostly the\n"
        "       kernel copying bytes into the page cache; it is the same work for every tool.\n"
        "       rest of machine CPU s: CPU everything else used meanwhile: other people's jobs on\n"
        "       a shared machine, and kernel threads writing dirty pages back to disk (including\n"
        "       this tool's own output).  'cores busy elsewhere' = that / wall; well above 0\n"
        "       means the row was measured on a contended machine: rerun, or use --repeat."
    )


if __name__ == "__main__":
    sys.exit(main())
