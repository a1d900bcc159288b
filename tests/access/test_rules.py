"""Property: for any mix of time-bounded care relationships, projects and grants, and any
moment, ``visible_studies`` lists exactly the studies ``decide`` allows, and those are exactly
the ones a plain-Python model of the rules expects."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from safepacs.access.models import (
    CareRelationship,
    CohortEntry,
    Grant,
    GrantStudy,
    Project,
    ProjectMember,
)
from safepacs.index.models import Patient, Study

from .conftest import T0

PATIENTS = ["PSEUDO-A", "PSEUDO-B", "PSEUDO-C"]
STUDIES = {p: [f"2.25.{i}{k}" for k in (1, 2)] for i, p in enumerate(PATIENTS, start=1)}
window = st.tuples(st.integers(-48, 48), st.integers(1, 72))  # start offset, length (hours)
rows = st.lists(st.tuples(st.sampled_from(["care", "project", "grant"]), st.sampled_from(PATIENTS),
                          st.integers(0, 1), window), max_size=6)


def expected(rows_, now_h: int) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"doc": set(), "res": set(), "tp": set()}
    for kind, patient, k, (start, length) in rows_:
        if not start <= now_h < start + length:
            continue
        if kind == "care":
            out["doc"] |= set(STUDIES[patient])
        elif kind == "project":
            out["res"] |= set(STUDIES[patient]) if k else {STUDIES[patient][0]}
        else:
            out["tp"].add(STUDIES[patient][k])
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows_=rows, now_h=st.integers(-50, 130))
def test_listing_decisions_and_model_agree(ac, make_user, clock, rows_, now_h):
    engine = ac.ctx.engine
    with Session(engine) as s, s.begin():
        for table in (GrantStudy, Grant, CohortEntry, ProjectMember, Project, CareRelationship):
            s.execute(delete(table))
        if not s.scalar(select(Patient.pk).limit(1)):
            for pid in PATIENTS:
                p = Patient(patient_id=pid, patient_name="", birth_date="", sex="")
                s.add(p)
                s.flush()
                s.add_all(Study(study_uid=u, patient_pk=p.pk) for u in STUDIES[pid])
    users = getattr(ac, "_prop_users", None)
    if users is None:
        users = ac._prop_users = {n: make_user(n, r) for n, r in (
            ("sec", "security_admin"), ("doc", "physician"), ("res", "researcher"), ("tp", "third_party"))}
    sec = users["sec"].principal
    clock.now = T0
    for n, (kind, patient, k, (start, length)) in enumerate(rows_):
        starts, ends = T0 + timedelta(hours=start), T0 + timedelta(hours=start + length)
        if kind == "care":
            ac.grants.add_care(sec, users["doc"].id, patient, starts_at=starts, ends_at=ends)
        elif kind == "project":
            proj = ac.grants.create_project(sec, f"P{n}", "x", ends, starts_at=starts)
            ac.grants.add_member(sec, proj.id, users["res"].id)
            if k:
                ac.grants.add_cohort(sec, proj.id, patient_ids=[patient])
            else:
                ac.grants.add_cohort(sec, proj.id, study_uids=[STUDIES[patient][0]])
        else:
            ac.grants.create_grant(sec, users["tp"].id, [STUDIES[patient][k]], starts_at=starts, ends_at=ends)
    clock.now = T0 + timedelta(hours=now_h)
    want = expected(rows_, now_h)
    everything = [u for uids in STUDIES.values() for u in uids]
    for name in ("doc", "res", "tp"):
        who = users[name].principal
        with Session(engine) as s:
            listed = set(s.scalars(select(Study.study_uid).where(ac.visible_studies(who))))
        allowed = {u for u in everything if ac.decide(who, u).allowed}
        assert listed == allowed == want[name], name
