"""Anomaly rules scored on a simulated month of accesses with planted misuse.

The month: clinicians reading their own patients' studies in working hours (a share of them
on night shifts, which is legitimate), radiologists reading many studies a day, researchers
and third parties under projects and grants, scattered refusals, care of VIP patients by
their own clinicians.  Planted into it, each with a ground-truth incident id: accesses with no
basis, break-glass, bulk downloads, night-time snooping by day staff, reader and patient with
the same family-name or address token, self-access through a clinical role, access after
discharge / grant end, and bursts of refusals (probing).

For each rule it prints alerts raised, true/false positives, planted incidents found and
missed, precision and recall.  An alert is a true positive when one of its events belongs to
an incident planted for that rule; recall counts incidents with at least one such alert.
Legitimate night shifts and the care of VIPs are *meant* to lower the off-hours and VIP
precision: those rules flag for review, they do not accuse.

    .venv/bin/python benchmarks/anomaly.py [--seed 7] [--clinicians 200] [--days 30]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from safepacs.audit import events as ev
from safepacs.audit.anomaly import RULES, AnomalyEngine
from safepacs.audit.events import AuditEvent

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def token(kind: str, value: int) -> str:
    """An opaque hashed token, as the access layer would hand over (never the value)."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:32]


class Month:
    def __init__(self, seed: int, clinicians: int, days: int) -> None:
        self.rnd = random.Random(seed)
        self.days = days
        self.events: list[AuditEvent] = []
        self.incidents: dict[str, str] = {}  # incident id -> rule
        self.patients = [f"PSN{i:05d}" for i in range(clinicians * 15)]
        self.vip = set(self.rnd.sample(self.patients, 6))
        self.clinicians = [(f"dr{i:03d}", "radiologist" if i % 4 == 0 else "physician") for i in range(clinicians)]
        self.night = {u for u, _ in self.clinicians if self.rnd.random() < 0.1}
        self.panel = {u: self.rnd.sample(self.patients, 40) for u, _ in self.clinicians}
        self.family = {p: self.rnd.randrange(10**6) for p in self.patients}
        self.address = {p: self.rnd.randrange(10**6) for p in self.patients}
        self.n = 0

    def add(self, when: datetime, user: str, role: str, patient: str, *, incident: str = "", outcome: int = 0,
            basis: str = "care", **detail: object) -> None:
        self.n += 1
        d: dict = {"basis": basis, "organisation": "General", "department": "Radiology" if role == "radiologist" else "Medicine",
                   "reader_family": token("f", hash(user) % 10**6 + 10**7), "patient_family": token("f", self.family.get(patient, 0)),
                   "reader_address": token("a", hash(user) % 10**6 + 10**7), "patient_address": token("a", self.address.get(patient, 0)),
                   "care_ends": (when + timedelta(days=30)).isoformat()}
        d.update(detail)
        self.events.append(AuditEvent(
            ev.INSTANCES_ACCESSED, ev.READ, outcome=outcome, user=user, role=role, address="10.0.0.1",
            route="decide:read", study_uid=f"2.25.{abs(hash(patient)) % 10**12}{self.n % 3}", patient=patient,
            level="identified" if outcome == 0 else "", purpose="emergency" if basis == "break_glass" else "treatment",
            request_id=incident or f"n{self.n}", detail=d, time=when.isoformat()))

    def plant(self, rule: str, k: int) -> str:
        iid = f"inc:{rule}:{k}"
        self.incidents[iid] = rule
        return iid

    def working(self, day: datetime, user: str) -> datetime:
        if user in self.night:
            return day + timedelta(hours=22, minutes=self.rnd.randrange(0, 420))
        return day + timedelta(hours=8, minutes=self.rnd.randrange(0, 600))

    def simulate(self) -> None:
        r = self.rnd
        for d in range(self.days):
            day = START + timedelta(days=d)
            weekend = day.weekday() >= 5
            for user, role in self.clinicians:
                if weekend and r.random() < 0.85:
                    continue
                for _ in range(r.randint(15, 45) if role == "radiologist" else r.randint(5, 25)):
                    p = r.choice(self.panel[user])
                    self.add(self.working(day, user), user, role, p)
                if r.random() < 0.05:  # an honest mistake: refused
                    self.add(self.working(day, user), user, role, r.choice(self.patients), outcome=ev.MINOR_FAILURE, basis="none")
            for k in range(8):  # researchers and third parties, daytime
                u = f"res{k}"
                for _ in range(r.randint(0, 30)):
                    self.add(day + timedelta(hours=9, minutes=r.randrange(480)), u, "researcher", r.choice(self.patients), basis="project")
        users = [u for u, _ in self.clinicians if u not in self.night]
        roles = dict(self.clinicians)

        def someone() -> tuple[str, str, datetime]:
            u = r.choice(users)
            day = START + timedelta(days=r.randrange(self.days))
            while day.weekday() >= 5:
                day += timedelta(days=1)
            return u, roles[u], day

        for k in range(15):
            u, role, day = someone()
            self.add(day + timedelta(hours=11), u, role, r.choice(self.patients), basis="none", incident=self.plant("no_basis", k))
        for k in range(10):
            u, role, day = someone()
            self.add(day + timedelta(hours=13), u, role, r.choice(self.patients), basis="break_glass", incident=self.plant("break_glass", k))
        for k in range(5):
            u, role, day = someone()
            iid = self.plant("bulk_access", k)
            for j in range(150):
                self.add(day + timedelta(hours=14, seconds=12 * j), u, role, self.patients[(k * 997 + j) % len(self.patients)], incident=iid)
        for k in range(10):
            u, role, day = someone()
            self.add(day + timedelta(hours=3, minutes=r.randrange(60)), u, role, r.choice(self.patients), incident=self.plant("off_hours", k))
        for k in range(8):  # a relative or neighbour
            u, role, day = someone()
            p = r.choice(self.patients)
            same = {"reader_family": token("f", self.family[p])} if k % 2 else {"reader_address": token("a", self.address[p])}
            self.add(day + timedelta(hours=10), u, role, p, incident=self.plant("same_family_or_address", k), **same)
        for k in range(6):
            u, role, day = someone()
            p = r.choice(self.patients)
            self.add(day + timedelta(hours=10), u, role, p, reader_patient=p, incident=self.plant("self_access", k))
        for k in range(8):
            u, role, day = someone()
            when = day + timedelta(hours=10)
            key = "care_ends" if k % 2 else "grant_ends"
            self.add(when, u, role, r.choice(self.patients), incident=self.plant("after_end", k), **{key: (when - timedelta(days=3)).isoformat()})
        for k in range(4):
            u, role, day = someone()
            iid = self.plant("refusal_burst", k)
            for j in range(20):
                self.add(day + timedelta(hours=15, seconds=9 * j), u, role, r.choice(self.patients), outcome=ev.MINOR_FAILURE, basis="none", incident=iid)
        for k, p in enumerate(sorted(self.vip)):  # VIPs: one curious look each, amid their own care
            u, role, day = someone()
            self.add(day + timedelta(hours=12), u, role, p, incident=self.plant("vip", k))
            carer = next((c for c, _ in self.clinicians if p in self.panel[c]), None)
            if carer:
                for j in range(3):
                    self.add(day + timedelta(days=1, hours=9 + j), carer, roles[carer], p)
        self.events.sort(key=lambda e: e.time)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--clinicians", type=int, default=200)
    ap.add_argument("--days", type=int, default=30)
    args = ap.parse_args(argv)
    month = Month(args.seed, args.clinicians, args.days)
    month.simulate()
    engine = AnomalyEngine(vip=month.vip)
    t = time.perf_counter()
    alerts = [a for i, e in enumerate(month.events) for a in engine.check(e, i)]
    dt = time.perf_counter() - t
    planted = defaultdict(set)
    for iid, rule in month.incidents.items():
        planted[rule].add(iid)
    print(f"simulated {len(month.events)} events over {args.days} days, {len(month.clinicians)} clinicians "
          f"({len(month.night)} on night shifts), {len(month.incidents)} planted incidents; "
          f"rules ran at {len(month.events) / dt:,.0f} events/s")
    print(f"{'rule':24} {'alerts':>6} {'TP':>5} {'FP':>5} {'found':>6} {'missed':>6} {'precision':>9} {'recall':>7}")
    for rule in RULES:
        mine = [a for a in alerts if a.rule == rule]
        tp = [a for a in mine if any(month.incidents.get(e.request_id) == rule for e in a.events)]
        found = {e.request_id for a in tp for e in a.events if month.incidents.get(e.request_id) == rule}
        precision = len(tp) / len(mine) if mine else float("nan")
        recall = len(found) / len(planted[rule]) if planted[rule] else float("nan")
        print(f"{rule:24} {len(mine):6} {len(tp):5} {len(mine) - len(tp):5} {len(found):6} "
              f"{len(planted[rule]) - len(found):6} {precision:9.2f} {recall:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
