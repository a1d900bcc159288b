"""What object-level authorisation costs: WADO-RS retrieve and QIDO-RS search, on and off,
on one server process and one data set.

The data: ``--studies`` studies (default 10k), ``--users`` accounts (1k) and ``--grants``
access rows (50k: care relationships, project cohort entries and grant studies, spread over
the accounts and patients).  ``--real`` of the studies are real tiny CT objects (16x16,
built here) ingested through the archive -- de-identified, sealed, stored -- and those are the
ones retrieved; the rest are index rows inserted directly, so that the grant filter of a search
runs over a full-size index.  The caller is a physician signed in for real (password + TOTP)
with care relationships to the patients of the real studies (plus random others).

"On" is the archive as served.  "Off" is the same server with ``archive.access`` (and the
masking layer's reference to it) swapped for ``AllowEverything``: the same interface, every
study visible and every decision "allowed at the level the physician gets anyway", so both
modes render the same bytes and the difference is the authorisation alone (the decision, its
database lookups and its audit event).

Measured (sequential requests, keep-alive, whole body read; p50/p99 in ms):

* WADO-RS ``GET /studies/{st}/series/{se}/instances/{sop}`` of random real instances;
* QIDO-RS ``GET /studies?limit=25`` (the first page of what the caller may see) and
  ``GET /studies?PatientID=X`` for a patient of the caller's, both returning the same rows
  in both modes.

Targets (issue 5): authorisation adds < 2 ms at p50; QIDO with grant filtering within 1.3x of
unfiltered.

Usage::

    .venv/bin/python benchmarks/authz.py            # 10k studies, 1k users, 50k grants
    .venv/bin/python benchmarks/authz.py --quick    # 1k / 100 / 5k, a smoke run
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pydicom
import uvicorn
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from sqlalchemy import ColumnElement, insert, select, true
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safepacs.access.models import (  # noqa: E402
    Account,
    CareRelationship,
    CohortEntry,
    Grant,
    GrantStudy,
    Project,
    ProjectMember,
)
from safepacs.access.principal import Decision, Principal  # noqa: E402
from safepacs.api import create_app  # noqa: E402
from safepacs.archive.service import Archive  # noqa: E402
from safepacs.index.models import Patient, Study  # noqa: E402
from tests.people import admin, person  # noqa: E402
from tests.server_harness import free_port  # noqa: E402


class AllowEverything:
    """The access interface with every check answered "yes" (authorisation off); everything
    else (sign-in, the desks) is the real object's."""

    def __init__(self, real: Any, level: str) -> None:
        self._real = real
        self._level = level

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def decide(self, principal: Principal, study_uid: str, *, action: str = "read", audit: bool = True) -> Decision:
        return Decision(True, self._level, "care", "treatment", None, None, "")

    def visible_studies(self, principal: Principal) -> ColumnElement[bool]:
        return true()

    def is_store_allowed(self, principal: Principal) -> bool:
        return True


def tiny_ct(patient: int, study: int) -> bytes:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.BurnedInAnnotation = "CT", "NO"
    ds.PatientName, ds.PatientID = f"AUTHZ^P{patient:05d}", f"AZ{patient:07d}"
    ds.StudyDate, ds.StudyID, ds.AccessionNumber = "20240101", str(study), f"AZ{patient:05d}{study:02d}"
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.PixelData = os.urandom(16 * 16 * 2)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def pairs(rng: random.Random, left: list, right: list, n: int) -> set[tuple]:
    """``n`` distinct random (left, right) pairs (grant tables are unique per pair)."""
    n = min(n, len(left) * len(right))
    out: set[tuple] = set()
    while len(out) < n:
        out.add((rng.choice(left), rng.choice(right)))
    return out


def populate(archive: Archive, args: argparse.Namespace, rng: random.Random) -> tuple[str, list[tuple[str, str, str]]]:
    """Real objects, bulk rows, the physician; returns (token, real instances)."""
    t0 = time.perf_counter()
    real = []
    for i in range(args.real):
        s = archive.ingest(tiny_ct(i // 3, i % 3), source="bench")
        real.append((s.study_uid, s.series_uid, s.sop_instance_uid))
    with Session(archive.access.ctx.engine) as s:
        own = list(s.scalars(select(Patient.patient_id)))
    print(f"ingested {len(real)} real objects of {len(own)} patients in {time.perf_counter() - t0:.1f} s")

    now = datetime.utcnow()
    start, end = now - timedelta(days=1), now + timedelta(days=365)
    engine = archive.access.ctx.engine
    t0 = time.perf_counter()
    with Session(engine) as s, s.begin():
        n_bulk = max(0, args.studies - len(real))
        n_pat = max(1, n_bulk // 3)
        s.execute(insert(Patient), [{"patient_id": f"BULK{p:08d}", "patient_name": "", "birth_date": "", "sex": ""}
                                    for p in range(n_pat)])
        pks = dict(s.execute(select(Patient.patient_id, Patient.pk)).all())
        bulk_ids = [f"BULK{p:08d}" for p in range(n_pat)]
        s.execute(insert(Study), [{"study_uid": f"2.25.{rng.getrandbits(120)}", "patient_pk": pks[bulk_ids[i % n_pat]],
                                   "study_date": f"2024{1 + i % 12:02d}{1 + i % 28:02d}", "modalities": "|CT|",
                                   "num_series": 1, "num_instances": 1} for i in range(n_bulk)])
        roles = ["physician", "radiologist", "researcher", "third_party"]
        s.execute(insert(Account), [{"username": f"bench-u{u:05d}", "role": roles[u % 4], "password_hash": "",
                                     "must_change_password": True, "created_at": now} for u in range(args.users)])
        accts = s.execute(select(Account.pk, Account.role).where(Account.username.like("bench-u%"))).all()
        clinical = [a for a, r in accts if r in ("physician", "radiologist")]
        researchers = [a for a, r in accts if r == "researcher"]
        third = [a for a, r in accts if r == "third_party"]
        all_patients = list(pks)
        all_studies = list(s.scalars(select(Study.study_uid)))
        n_care, n_cohort = args.grants * 6 // 10, args.grants * 2 // 10
        n_grant = args.grants - n_care - n_cohort
        s.execute(insert(CareRelationship), [
            {"account_pk": a, "patient_id": pid, "starts_at": start, "ends_at": end, "created_by": "bench",
             "created_at": now} for a, pid in pairs(rng, clinical, all_patients, n_care)])
        n_proj = max(1, len(researchers) // 2)
        s.execute(insert(Project), [{"code": f"bench-p{p}", "purpose": "bench", "level": "pseudonymised",
                                     "starts_at": start, "expires_at": end, "created_by": "bench", "created_at": now}
                                    for p in range(n_proj)])
        projects = list(s.scalars(select(Project.pk)))
        s.execute(insert(ProjectMember), [{"project_pk": rng.choice(projects), "account_pk": a} for a in researchers])
        s.execute(insert(CohortEntry), [{"project_pk": p, "study_uid": st} for p, st in
                                        pairs(rng, projects, all_studies, n_cohort)])
        s.execute(insert(Grant), [{"account_pk": a, "level": "anonymised", "all_studies": False, "starts_at": start,
                                   "ends_at": end, "created_by": "bench", "created_at": now} for a in third])
        grants = list(s.scalars(select(Grant.pk)))
        s.execute(insert(GrantStudy), [{"grant_pk": g, "study_uid": st} for g, st in
                                       pairs(rng, grants, all_studies, n_grant)])
    print(f"inserted {n_bulk} studies, {args.users} users, {n_care} care + {n_cohort} cohort + {n_grant} grant-study"
          f" rows in {time.perf_counter() - t0:.1f} s")

    doc, token = person(archive, "bench-doc", "physician")
    sec = admin(archive)
    for pid in own:
        archive.access.grants.add_care(sec, doc.account_id, pid)
    for pid in rng.sample(all_patients, min(50, len(all_patients))):  # and some other patients
        archive.access.grants.add_care(sec, doc.account_id, pid)
    archive.audit.flush()
    return token, real


def timed(client: httpx.Client, paths: list[str]) -> list[float]:
    out = []
    for p in paths:
        t = time.perf_counter()
        r = client.get(p)
        _ = r.content
        out.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{p.split('?')[0][:40]}...: HTTP {r.status_code}")
    return out


def pct(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return statistics.median(samples), q[98]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=10_000)
    ap.add_argument("--users", type=int, default=1_000)
    ap.add_argument("--grants", type=int, default=50_000)
    ap.add_argument("--real", type=int, default=300, help="studies that are real stored objects")
    ap.add_argument("--requests", type=int, default=1_000, help="timed requests per measurement")
    ap.add_argument("--quick", action="store_true", help="1k studies, 100 users, 5k grants, 200 requests")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    if args.quick:
        args.studies, args.users, args.grants, args.real, args.requests = 1_000, 100, 5_000, 60, 200
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="safepacs-authz-") as tmp:
        archive, _ = Archive.create(Path(tmp) / "data")
        try:
            token, real = populate(archive, args, rng)
            run(archive, token, real, args, rng)
        finally:
            archive.close()


def run(archive: Archive, token: str, real: list[tuple[str, str, str]], args: argparse.Namespace,
        rng: random.Random) -> None:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(archive), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    real_access = archive.access
    off = AllowEverything(real_access, "identified")  # what the physician gets by care anyway
    wado = [f"/dicomweb/studies/{st}/series/{se}/instances/{sop}" for st, se, sop in
            (rng.choice(real) for _ in range(args.requests))]
    results: dict[str, dict[str, tuple[float, float]]] = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            first = c.get("/dicomweb/studies", params={"limit": "25"}).json()
            pid = first[0]["00100020"]["Value"][0]
            queries = {"QIDO /studies?limit=25": ["/dicomweb/studies?limit=25"] * (args.requests // 2),
                       "QIDO /studies?PatientID=X": [f"/dicomweb/studies?PatientID={pid}"] * (args.requests // 2)}
            # The first round warms every cache (the render cache above all: a cold "on" round
            # followed by a warm "off" one would credit the cache to "off"); the second round,
            # on and off interleaved, is the one reported.
            for mode in ("warm-on", "warm-off", "on", "off"):
                access = real_access if mode.endswith("on") else off
                archive.access = access
                archive.masking.access = access
                timed(c, wado[:50])
                for name, paths in (("WADO instance", wado), *queries.items()):
                    samples = timed(c, paths)
                    if mode in ("on", "off"):
                        rows = len(c.get(paths[0]).json()) if name.startswith("QIDO") else 1
                        results.setdefault(name, {})[mode] = pct(samples)
                        results[name][mode + "-rows"] = (rows, rows)
    finally:
        archive.access = real_access
        archive.masking.access = real_access
        server.should_exit = True
        thread.join(10)
    report(results, args)


def report(results: dict, args: argparse.Namespace) -> None:
    print(f"\n{args.studies} studies, {args.users} users, {args.grants} grant rows; {args.requests} requests each;"
          f" SQLite; one physician (care relationships)\n")
    print(f"{'request':28} {'on p50':>8} {'on p99':>8} {'off p50':>8} {'off p99':>8} {'+p50 ms':>8} {'ratio':>6}  rows")
    for name, r in results.items():
        on50, on99 = r["on"]
        off50, off99 = r["off"]
        print(f"{name:28} {on50:8.2f} {on99:8.2f} {off50:8.2f} {off99:8.2f} {on50 - off50:8.2f} {on50 / off50:6.2f}"
              f"  {r['on-rows'][0]}/{r['off-rows'][0]}")
    w = results["WADO instance"]
    q = [results[k] for k in results if k.startswith("QIDO")]
    print(f"\ntarget: authorisation adds < 2 ms at p50 to WADO-RS: {w['on'][0] - w['off'][0]:.2f} ms"
          f" -> {'met' if w['on'][0] - w['off'][0] < 2 else 'NOT met'}")
    worst = max(x["on"][0] / x["off"][0] for x in q)
    print(f"target: QIDO-RS with grant filtering within 1.3x of unfiltered (p50): worst {worst:.2f}x"
          f" -> {'met' if worst <= 1.3 else 'NOT met'}")


if __name__ == "__main__":
    main()
