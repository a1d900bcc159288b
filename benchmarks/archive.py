"""The archive against Orthanc, side by side: ingest, search and retrieve.

What it measures, on one synthetic corpus (``safepacs.synth.generate``, full-size images;
only CR, DX, CT and MR files that declare ``BurnedInAnnotation`` NO are used -- 2048x2048 and
3000x2500 radiographs, 512x512 slices).  safepacs checks the pixels of every image that does
not declare NO for burned-in text (OCR, ~0.2 s a radiograph); that cost is what
``benchmarks/pixel_clean.py`` measures, so this benchmark keeps to the header path that
both systems share:

* **STOW-RS ingest** (instances/s): ``--clients`` threads, each POSTing one instance per
  request (multipart/related), keep-alive connections; wall time of the whole corpus.
* **C-STORE ingest** (instances/s): DCMTK ``storescu`` sending the whole corpus on one
  association into a fresh archive.
* **QIDO-RS study search at N studies** (p50/p99 ms): the index is first filled with
  ``--studies`` tiny one-instance studies (16x16 CT, built in this script) through STOW-RS
  in batches of 50 per request, for both systems alike; then ``--queries`` sequential
  ``GET /studies?PatientID=X`` for random X.  safepacs is asked once by the pseudonymous
  PatientID (what a de-identified reader sees) and once by the original PatientID with an
  identity-allowed token (the encrypted identity index path).
* **WADO-RS instance retrieve** (p50/p99 ms): ``--passes`` sequential passes of
  ``GET /studies/../series/../instances/..`` over every corpus instance, each pass in its own
  shuffled order (the same orders for both systems), whole body read.  Every instance is
  retrieved as often as every other, so the sample has the corpus' own mix of slices and
  radiographs; a random draw of a few hundred did not (200 draws from this corpus' 240
  slices and 260 radiographs gave 101 slices, which put the overall median on the slowest
  two slices: a tail, decided by noise).  Also the p50 and p99 of the slices (CT/MR,
  ~0.5 MB) and of the radiographs (CR/DX, 8-15 MB) apart, since the overall median of such
  a two-humped mix sits at the edge of one hump.  The search and retrieve loops run with this
  client's garbage collector paused (``untimed_garbage``), as ``timeit`` does.

  The client.  Latency is timed with the standard library's ``http.client`` (one keep-alive
  connection, the body read whole by ``read()``): it takes a Content-Length body in a few
  large reads, so the time is the server's.  httpx, which this script uses elsewhere, takes
  about 15-20 ms of Python to receive an 8 MB radiograph here -- more than either server
  spends on it -- and since it reads while the server is still sending, a slower server is
  partly hidden behind it (a radiograph measured 15.7 ms from safepacs and 28.4 ms from
  Orthanc with ``http.client``, 33.2 and 47.1 ms with httpx, 32.9 and 43.3 ms with requests,
  in one run).  The same passes are then timed again with httpx, as a second view, in the
  ``httpx`` rows: what a client with that overhead sees.

Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) runs with a minimal config: loopback only
in effect (it binds 0.0.0.0 whatever the config says, so ``RemoteAccessAllowed`` is false and
HTTP auth is on), unusual ports, UTF-8 default encoding, no storage compression, no HTTP
compression, and the client sends ``Accept-Encoding: identity`` to it (its on-the-fly gzip
makes retrieval 40x slower).  It is stopped by PID.  safepacs runs as ``safepacs serve``
(de-identifying, encrypting, fsync-ing every object); Orthanc does neither.

Usage::

    .venv/bin/python benchmarks/archive.py                 # 500 instances (~2 GB), 10k studies
    .venv/bin/python benchmarks/archive.py --count 60 --studies 500   # smoke test
"""

from __future__ import annotations

import argparse
import base64
import gc
import http.client
import io
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from safepacs.archive.service import Archive  # noqa: E402
from safepacs.synth import generate  # noqa: E402
from tests.people import clinician  # noqa: E402
from tests.server_harness import Server, configure, free_port  # noqa: E402

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
KEEP_MODALITIES = {"CR", "DX", "CT", "MR"}
BOUNDARY = "bench-boundary-7d1f"
ACCEPT_DICOM = 'multipart/related; type="application/dicom"'


# --- the corpus ---------------------------------------------------------------------------
def corpus(workdir: Path, count: int, seed: int) -> list[Path]:
    out = workdir / "corpus"
    if not out.exists():
        t = time.perf_counter()
        generate(out, int(count * 2.2) + 20, seed)
        print(f"corpus generated in {time.perf_counter() - t:.0f} s", flush=True)
    files = []
    for f in sorted(out.rglob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["Modality", "BurnedInAnnotation"])
        if str(ds.get("Modality", "")) in KEEP_MODALITIES and str(ds.get("BurnedInAnnotation", "")) == "NO":
            files.append(f)
    if len(files) < count:
        raise SystemExit(f"only {len(files)} eligible files; raise the generated count")
    return files[:count]


def tiny_study(i: int, run: str) -> bytes:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.BurnedInAnnotation = "NO"
    ds.PatientName = f"BENCH^P{i:05d}"
    ds.PatientID = f"{run}{i:05d}"
    ds.StudyDate = "20240101"
    ds.StudyID = "1"
    ds.AccessionNumber = f"A{i:07d}"
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = os.urandom(16 * 16 * 2)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def multipart(items: list[bytes]) -> bytes:
    out = []
    for data in items:
        out += [f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\nContent-Length: {len(data)}\r\n\r\n".encode(),
                data, b"\r\n"]
    out.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(out)


# --- the two systems ------------------------------------------------------------------------
class System:
    name: str
    base: str  # DICOMweb root
    dicom_port: int
    ae: str
    headers: dict[str, str]
    auth: tuple[str, str] | None = None

    def client(self) -> httpx.Client:
        return httpx.Client(headers=self.headers, auth=self.auth, timeout=300)


class Orthanc(System):
    name = "Orthanc"
    ae = "ORTHANC"

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / f"orthanc-{secrets.token_hex(3)}"
        self.dir.mkdir(parents=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        password = secrets.token_urlsafe(12)
        config = {
            "Name": "bench", "StorageDirectory": str(self.dir / "storage"), "IndexDirectory": str(self.dir / "index"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": self.ae,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": {"bench": password},
            "Plugins": [DICOMWEB_PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DefaultEncoding": "Utf8", "StorageCompression": False, "HttpCompressionEnabled": False,
            "DicomCheckCalledAet": False, "HttpTimeout": 300,
        }
        (self.dir / "config.json").write_text(json.dumps(config, indent=1))
        self.log = open(self.dir / "orthanc.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([ORTHANC, str(self.dir / "config.json")], stdout=self.log, stderr=subprocess.STDOUT)
        self.auth = ("bench", password)
        self.headers = {"Accept-Encoding": "identity"}
        self.base = f"http://127.0.0.1:{self.http_port}/dicom-web"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.http_port}/system", auth=self.auth, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("Orthanc did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Safepacs(System):
    name = "safepacs"
    ae = "SAFEPACS"

    def __init__(self, workdir: Path) -> None:
        root = workdir / f"safepacs-{secrets.token_hex(3)}"
        root.mkdir(parents=True)
        archive, _admins = Archive.create(root / "data")
        token = archive.create_token("bench-reader")
        archive.close()
        http_port, dicom_port = configure(root / "data", None)
        self.server = Server(root / "data", http_port, dicom_port)
        self.server.start()
        self.root = root
        self.dicom_port = dicom_port
        self.headers = {"Authorization": f"Bearer {token}"}
        self.base = f"http://127.0.0.1:{http_port}/dicomweb"

    def stop(self) -> None:
        self.server.stop(120)
        shutil.rmtree(self.root, ignore_errors=True)


# --- measurements ------------------------------------------------------------------------------
def stow(system: System, files: list[Path], clients: int) -> tuple[float, list[tuple[str, str, str]]]:
    """instances/s, and the (study, series, sop) each instance is stored under."""
    local = threading.local()
    datas = [f.read_bytes() for f in files]  # read before timing: ingest, not disk

    def one(data: bytes) -> tuple[str, str, str]:
        if not hasattr(local, "c"):
            local.c = system.client()
        r = local.c.post(system.base + "/studies", content=multipart([data]),
                         headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
                                  "Accept": "application/dicom+json"})
        if r.status_code != 200:
            raise RuntimeError(f"{system.name} STOW-RS answered {r.status_code}")
        url = r.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
        parts = url.split("/studies/")[1].split("/")
        return parts[0], parts[2], parts[4]

    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        where = list(pool.map(one, datas))
    return len(files) / (time.perf_counter() - t), where


def cstore(system: System, files: list[Path]) -> float:
    t = time.perf_counter()
    r = subprocess.run(["storescu", "-aet", "BENCH", "-aec", system.ae, "127.0.0.1", str(system.dicom_port),
                        *map(str, files)], capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"storescu to {system.name} failed: {r.stderr[-500:]}")
    return len(files) / elapsed


def fill(system: System, n: int, clients: int, run: str) -> None:
    batches = [list(range(i, min(i + 50, n))) for i in range(0, n, 50)]
    local = threading.local()

    def one(batch: list[int]) -> None:
        if not hasattr(local, "c"):
            local.c = system.client()
        r = local.c.post(system.base + "/studies", content=multipart([tiny_study(i, run) for i in batch]),
                         headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
                                  "Accept": "application/dicom+json"})
        if r.status_code != 200:
            raise RuntimeError(f"{system.name} fill answered {r.status_code}")

    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, batches))
    print(f"  {system.name}: {n} tiny studies in {time.perf_counter() - t:.0f} s", flush=True)


@contextmanager
def untimed_garbage() -> Iterator[Callable[[], None]]:
    """No collection of the benchmark's own garbage inside a timed request, as ``timeit``
    does; the loop calls the function given between requests, outside the timing, to
    collect instead.

    A collection in this client falls on whichever request is in flight: one took 22 ms
    here, and the slowest slices (which decide the overall WADO p50, see the table's note)
    were then the client's pauses, not the server's.  Collecting between requests (not
    just before and after the loop) matters: a retrieved radiograph's response lives in
    reference cycles, and hundreds of them left uncollected made every later request pay
    for fresh memory.  What was alive before the loop is frozen, so each collection only
    walks the loop's own garbage.
    """
    gc.collect()
    gc.freeze()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield gc.collect
    finally:
        if enabled:
            gc.enable()
        gc.unfreeze()
        gc.collect()


def percentiles(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s) * 1000, s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))] * 1000


def qido(system: System, ids: list[str], headers: dict[str, str] | None = None) -> tuple[float, float]:
    times = []
    with system.client() as c, untimed_garbage() as collect:
        for pid in ids:
            t = time.perf_counter()
            r = c.get(system.base + "/studies", params={"PatientID": pid},
                      headers={"Accept": "application/dicom+json", **(headers or {})})
            times.append(time.perf_counter() - t)
            collect()
            if r.status_code != 200 or not r.json():
                raise RuntimeError(f"{system.name} QIDO answered {r.status_code} / {len(r.content)} bytes")
    return percentiles(times)


def passes(where: list[tuple[str, str, str]], n: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """``n`` passes over every stored instance, each in its own shuffled order."""
    return [w for _ in range(n) for w in rng.sample(where, len(where))]


@contextmanager
def plain_getter(system: System) -> Iterator[Callable[[str], tuple[int, int]]]:
    """GET with ``http.client`` on one keep-alive connection: (status, body bytes)."""
    url = urlsplit(system.base)
    headers = {**system.headers, "Accept": ACCEPT_DICOM}
    if system.auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(system.auth).encode()).decode()
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=300)

    def get(path: str) -> tuple[int, int]:
        conn.request("GET", url.path + path, headers=headers)
        resp = conn.getresponse()
        return resp.status, len(resp.read())

    try:
        yield get
    finally:
        conn.close()


@contextmanager
def httpx_getter(system: System) -> Iterator[Callable[[str], tuple[int, int]]]:
    with system.client() as c:
        def get(path: str) -> tuple[int, int]:
            r = c.get(system.base + path, headers={"Accept": ACCEPT_DICOM})
            return r.status_code, len(r.content)

        yield get


def wado(system: System, order: list[tuple[str, str, str]],
         by_size: dict[str, list[float]] | None = None, client=plain_getter) -> tuple[float, float]:
    """p50/p99 of retrieving ``order``, one after another; ``by_size`` collects the times of
    slices (< 2 MB) and radiographs apart."""
    times = []
    with client(system) as get, untimed_garbage() as collect:
        for st, se, sop in order:
            t = time.perf_counter()
            status, size = get(f"/studies/{st}/series/{se}/instances/{sop}")
            times.append(time.perf_counter() - t)
            collect()
            if status != 200:
                raise RuntimeError(f"{system.name} WADO-RS answered {status}")
            if by_size is not None:
                by_size.setdefault("slices" if size < 2_000_000 else "radiographs", []).append(times[-1])
    return percentiles(times)


def settle(seconds: float) -> None:
    """Let the machine return to the same state before each system's ingest.

    Writing the corpus fills gigabytes of page cache.  When the previous system's data is
    deleted, that memory is free again, and a system that starts ingesting at once reuses
    it; a few seconds later a VM with free page reporting (virtio-balloon, as here) has
    handed it back to its host, and every page must be faulted in afresh: writing into such
    page cache took 3.5 times the kernel time here (0.56 against 1.94 GB per CPU-second).
    Without a pause the second system of a phase gets the cheap memory the first one freed;
    with it, both pay alike.
    """
    os.sync()
    time.sleep(seconds)


def phase_a(kind: type[System], workdir: Path, files: list[Path], args: argparse.Namespace, out: dict) -> None:
    """Fresh system: STOW-RS the corpus, then retrieve random instances."""
    rng = random.Random(args.seed)
    print(f"{kind.name}: STOW-RS + WADO-RS", flush=True)
    s = kind(workdir)
    try:
        settle(args.settle)
        out["stow"], where = stow(s, files, args.clients)
        wado(s, [rng.choice(where) for _ in range(5)])  # warm-up
        order = passes(where, args.passes, rng)
        by_size: dict[str, list[float]] = {}
        out["wado"] = wado(s, order, by_size)
        for kind_, samples in by_size.items():
            out[f"wado_{kind_}"] = percentiles(samples)
            out[f"wado_{kind_}_count"] = len(samples)
        wado(s, [rng.choice(where) for _ in range(5)], client=httpx_getter)  # warm-up
        by_size = {}
        out["wado_httpx"] = wado(s, order, by_size, client=httpx_getter)
        for kind_, samples in by_size.items():
            out[f"wado_httpx_{kind_}"] = percentiles(samples)
    finally:
        s.stop()


def phase_b(kind: type[System], workdir: Path, files: list[Path], args: argparse.Namespace, out: dict) -> None:
    """Fresh system: storescu the corpus, fill the index with tiny studies, then search."""
    rng = random.Random(args.seed + 1)
    print(f"{kind.name}: C-STORE + QIDO-RS", flush=True)
    s = kind(workdir)
    try:
        out["cstore"] = cstore(s, files)
        run = "B" + secrets.token_hex(2).upper()
        fill(s, args.studies, args.clients, run)
        picks = [rng.randrange(args.studies) for _ in range(args.queries)]
        if isinstance(s, Safepacs):
            with s.client() as c:
                listing = c.get(s.base + "/studies", params={"limit": str(min(10_000, args.studies + len(files))),
                                                              "includefield": "PatientID"}).json()
            pseudonyms = sorted({x["00100020"]["Value"][0] for x in listing if "00100020" in x and "Value" in x["00100020"]})
            rng.shuffle(pseudonyms)
            out["qido"] = qido(s, [pseudonyms[i % len(pseudonyms)] for i in range(args.queries)])
            beside = Archive.open(s.root / "data")  # a physician caring for every patient now stored
            identity_token = clinician(beside, "bench-clinician")[1]
            beside.close()
            out["qido_identity"] = qido(s, [f"{run}{i:05d}" for i in picks],
                                        {"Authorization": f"Bearer {identity_token}"})
        else:
            out["qido"] = qido(s, [f"{run}{i:05d}" for i in picks])
    finally:
        s.stop()


def table(res: dict, args: argparse.Namespace) -> str:
    sp, oc = res.get("safepacs", {}), res.get("Orthanc", {})
    rows = [("STOW-RS ingest (inst/s)", "stow", None, True, ">= 1x"),
            ("C-STORE storescu (inst/s)", "cstore", None, True, ">= 2x"),
            (f"QIDO-RS PatientID p50 (ms, {args.studies} studies)", "qido", 0, False, ""),
            ("QIDO-RS PatientID p99 (ms)", "qido", 1, False, ""),
            ("WADO-RS instance p50 (ms)", "wado", 0, False, "<= 1x"),
            ("WADO-RS instance p99 (ms)", "wado", 1, False, ""),
            ("WADO-RS p50, CT/MR slices (ms)", "wado_slices", 0, False, ""),
            ("WADO-RS p99, CT/MR slices (ms)", "wado_slices", 1, False, ""),
            ("WADO-RS p50, CR/DX radiographs (ms)", "wado_radiographs", 0, False, ""),
            ("WADO-RS p99, CR/DX radiographs (ms)", "wado_radiographs", 1, False, ""),
            ("httpx client: WADO-RS instance p50 (ms)", "wado_httpx", 0, False, ""),
            ("httpx client: WADO-RS instance p99 (ms)", "wado_httpx", 1, False, ""),
            ("httpx client: p50, slices (ms)", "wado_httpx_slices", 0, False, ""),
            ("httpx client: p50, radiographs (ms)", "wado_httpx_radiographs", 0, False, "")]
    lines = ["| metric | safepacs | Orthanc | safepacs/Orthanc | target |", "|---|---|---|---|---|"]
    for label, key, idx, higher, target in rows:
        a, b = sp.get(key), oc.get(key)
        a = a[idx] if idx is not None and a is not None else a
        b = b[idx] if idx is not None and b is not None else b
        ratio = f"{a / b:.2f}x" if a and b else "-"
        verdict = ""
        if target and a and b:
            want = float(target.split()[1].rstrip("x"))
            ok = (a / b >= want) if higher else (a / b <= want)
            verdict = " PASS" if ok else " MISS"
        fa = f"{a:.1f}" if a is not None else "-"
        fb = f"{b:.1f}" if b is not None else "-"
        lines.append(f"| {label} | {fa} | {fb} | {ratio} | {target}{verdict} |")
    if "qido_identity" in sp:
        p50, p99 = sp["qido_identity"]
        lines.append(f"| QIDO-RS by original PatientID, identity reader p50/p99 (ms) | {p50:.1f} / {p99:.1f} | - | - | |")
    slices, radiographs = sp.get("wado_slices_count"), sp.get("wado_radiographs_count")
    if slices and radiographs:
        # the overall median of a two-humped mix lands at the edge of one hump
        edge = (f"the slowest slices (their p{100 * (slices - 1) // slices})" if slices > radiographs
                else f"the fastest radiographs (their p{100 // radiographs + 1})" if radiographs > slices
                else "between the slowest slice and the fastest radiograph")
        lines.append(f"\nRetrieve mix: {slices} slices, {radiographs} radiographs; the overall p50 sits on {edge}.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=500, help="corpus instances (default 500, ~2 GB)")
    ap.add_argument("--studies", type=int, default=10_000, help="tiny studies in the index for QIDO (default 10000)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--passes", type=int, default=2,
                    help="WADO-RS passes over every instance, each shuffled (default 2: 1000 retrieves)")
    ap.add_argument("--clients", type=int, default=4, help="concurrent STOW-RS clients (default 4)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--settle", type=float, default=15,
                    help="seconds of quiet before each system's STOW-RS ingest (default 15; see settle())")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the corpus here between runs")
    ap.add_argument("--skip", choices=["safepacs", "orthanc"], default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.skip != "orthanc" and not Path(ORTHANC).exists():
        raise SystemExit(f"{ORTHANC} missing: apt-get install orthanc orthanc-dicomweb (or --skip orthanc)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="safepacs-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    files = corpus(workdir, args.count, args.seed)
    size = sum(f.stat().st_size for f in files)
    print(f"{len(files)} instances, {size / 1e9:.2f} GB; {args.studies} tiny studies for QIDO; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    res: dict = {}
    kinds = [k for k in (Safepacs, Orthanc) if k.name.lower() != args.skip]
    try:
        # Phases interleave across the systems, so that a change in the load of a shared machine
        # falls on both rather than on one.
        for phase in (phase_a, phase_b):
            for kind in kinds:
                phase(kind, workdir, files, args, res.setdefault(kind.name, {}))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} (other jobs inflate both columns)")
    print(table(res, args))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
