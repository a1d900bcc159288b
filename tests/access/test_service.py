"""decide() and visible_studies(): every basis, time bounds, admins refused, audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from safepacs.access.principal import ADMIN_ROLES
from safepacs.audit.events import INSTANCES_ACCESSED, MINOR_FAILURE
from safepacs.index.models import Study


def visible(ac, who) -> set[str]:
    with Session(ac.ctx.engine) as s:
        return set(s.scalars(select(Study.study_uid).where(ac.visible_studies(who))))


def all_uids(studies) -> list[str]:
    return [u for uids in studies.values() for u in uids]


def assert_consistent(ac, who, studies) -> set[str]:
    """visible_studies and decide agree on every study."""
    seen = visible(ac, who)
    for uid in all_uids(studies):
        assert ac.decide(who, uid).allowed == (uid in seen), uid
    return seen


@pytest.fixture
def sec(make_user):
    return make_user("sec", "security_admin")


def test_physician_without_care_relationship_is_refused_and_audited(ac, make_user, studies, sink):
    doc = make_user("doc", "physician")
    d = ac.decide(doc.principal, studies["PSEUDO-A"][0])
    assert not d.allowed and d.level is None and d.basis == "none"
    ev = sink.events[-1]
    assert ev.event_id == INSTANCES_ACCESSED and ev.outcome == MINOR_FAILURE
    assert ev.user == "doc" and ev.study_uid == studies["PSEUDO-A"][0]
    assert visible(ac, doc.principal) == set()


def test_care_relationship_gives_identified_access_to_that_patient_only_until_it_ends(
        ac, make_user, studies, sec, clock, sink):
    doc = make_user("doc", "physician")
    care = ac.grants.add_care(sec.principal, doc.id, "PSEUDO-A", ends_at=clock.now + timedelta(hours=2))
    d = ac.decide(doc.principal, studies["PSEUDO-A"][1])
    assert (d.allowed, d.level, d.basis, d.purpose) == (True, "identified", "care", "treatment")
    assert sink.events[-1].outcome == 0 and sink.events[-1].level == "identified"
    assert assert_consistent(ac, doc.principal, studies) == set(studies["PSEUDO-A"])
    clock.advance(hours=2, seconds=-1)
    assert ac.decide(doc.principal, studies["PSEUDO-A"][0]).allowed
    clock.advance(seconds=1)  # exactly the end
    assert not ac.decide(doc.principal, studies["PSEUDO-A"][0]).allowed
    assert assert_consistent(ac, doc.principal, studies) == set()
    assert care.ends_at == clock.now


def test_care_relationship_not_yet_started_gives_nothing(ac, make_user, studies, sec, clock):
    doc = make_user("doc", "radiologist")
    ac.grants.add_care(sec.principal, doc.id, "PSEUDO-B", starts_at=clock.now + timedelta(days=1),
                       ends_at=clock.now + timedelta(days=2))
    assert assert_consistent(ac, doc.principal, studies) == set()
    clock.advance(days=1)
    assert assert_consistent(ac, doc.principal, studies) == set(studies["PSEUDO-B"])


def test_ended_care_relationship_stops_access_at_once(ac, make_user, studies, sec):
    doc = make_user("doc", "physician")
    care = ac.grants.add_care(sec.principal, doc.id, "PSEUDO-A")
    assert ac.decide(doc.principal, studies["PSEUDO-A"][0]).allowed
    ac.grants.end_care(sec.principal, care.id)
    assert not ac.decide(doc.principal, studies["PSEUDO-A"][0]).allowed


def test_researcher_sees_cohort_at_project_level_until_expiry(ac, make_user, studies, sec, clock):
    res = make_user("res", "researcher")
    proj = ac.grants.create_project(sec.principal, "LUNG-01", "lung nodules", clock.now + timedelta(days=10))
    ac.grants.add_member(sec.principal, proj.id, res.id)
    ac.grants.add_cohort(sec.principal, proj.id, study_uids=[studies["PSEUDO-A"][0]], patient_ids=["PSEUDO-B"])
    d = ac.decide(res.principal, studies["PSEUDO-A"][0])
    assert (d.allowed, d.level, d.basis, d.purpose, d.project) == (
        True, "pseudonymised", "project", "research", "LUNG-01")
    expected = {studies["PSEUDO-A"][0], *studies["PSEUDO-B"]}
    assert assert_consistent(ac, res.principal, studies) == expected
    clock.advance(days=10)
    assert assert_consistent(ac, res.principal, studies) == set()


def test_researcher_not_member_of_project_sees_nothing(ac, make_user, studies, sec, clock):
    res = make_user("res", "researcher")
    proj = ac.grants.create_project(sec.principal, "P2", "x", clock.now + timedelta(days=1), level="anonymised")
    ac.grants.add_cohort(sec.principal, proj.id, patient_ids=["PSEUDO-A"])
    assert assert_consistent(ac, res.principal, studies) == set()


def test_third_party_grant_is_named_studies_at_grant_level_until_it_ends(ac, make_user, studies, sec, clock):
    tp = make_user("tp", "third_party")
    g = ac.grants.create_grant(sec.principal, tp.id, [studies["PSEUDO-B"][1]], ends_at=clock.now + timedelta(days=3))
    d = ac.decide(tp.principal, studies["PSEUDO-B"][1])
    assert (d.allowed, d.level, d.basis, d.purpose, d.grant_id) == (True, "anonymised", "grant", "third-party", g.id)
    assert assert_consistent(ac, tp.principal, studies) == {studies["PSEUDO-B"][1]}
    clock.advance(days=3)
    assert assert_consistent(ac, tp.principal, studies) == set()


def test_revoked_grant_ends_access(ac, make_user, studies, sec):
    tp = make_user("tp", "third_party")
    g = ac.grants.create_grant(sec.principal, tp.id, [studies["PSEUDO-A"][0]], level="deidentified")
    assert ac.decide(tp.principal, studies["PSEUDO-A"][0]).level == "deidentified"
    ac.grants.revoke_grant(sec.principal, g.id)
    assert not ac.decide(tp.principal, studies["PSEUDO-A"][0]).allowed


def test_patient_sees_own_studies_only(ac, make_user, studies, sec):
    pat = make_user("pat", "patient")
    assert assert_consistent(ac, pat.principal, studies) == set()
    ac.grants.link_patient(sec.principal, pat.id, "PSEUDO-B")
    d = ac.decide(pat.principal, studies["PSEUDO-B"][0])
    assert (d.allowed, d.level, d.basis, d.purpose) == (True, "identified", "patient", "own-record")
    assert assert_consistent(ac, pat.principal, studies) == set(studies["PSEUDO-B"])


def test_service_account_needs_explicit_grant_and_gets_deidentified(ac, make_user, studies, sec, clock):
    svc = make_user("svc", "service")
    assert assert_consistent(ac, svc.principal, studies) == set()
    ac.grants.create_service_grant(sec.principal, svc.id, ends_at=clock.now + timedelta(days=1))
    d = ac.decide(svc.principal, studies["PSEUDO-A"][0])
    assert (d.allowed, d.level, d.basis, d.purpose) == (True, "deidentified", "service", "integration")
    assert assert_consistent(ac, svc.principal, studies) == set(all_uids(studies))
    clock.advance(days=1)
    assert assert_consistent(ac, svc.principal, studies) == set()


@pytest.mark.parametrize("role", ADMIN_ROLES)
def test_administrators_are_refused_every_image_always(ac, make_user, studies, role):
    admin = make_user("adm", role)
    for action in ("read", "query", "store", "export"):
        for uid in all_uids(studies):
            assert not ac.decide(admin.principal, uid, action=action).allowed
    assert visible(ac, admin.principal) == set()
    assert not ac.is_store_allowed(admin.principal)


def test_unknown_study_and_forged_uid_are_refused(ac, make_user, studies, sec):
    doc = make_user("doc", "physician")
    ac.grants.add_care(sec.principal, doc.id, "PSEUDO-A")
    for uid in ("2.25.999", "' OR 1=1 --", "*", "", "2.25.1*"):
        d = ac.decide(doc.principal, uid)
        assert not d.allowed and d.reason == "no such study"


def test_disabled_account_loses_access(ac, make_user, studies, sec):
    sys = make_user("sys", "system_admin")
    doc = make_user("doc", "physician")
    ac.grants.add_care(sec.principal, doc.id, "PSEUDO-A")
    ac.accounts.set_disabled(sys.principal, doc.id)
    assert not ac.decide(doc.principal, studies["PSEUDO-A"][0]).allowed
    assert visible(ac, doc.principal) == set()


def test_export_of_identified_data_needs_approval(ac, make_user, studies, sec):
    doc = make_user("doc", "physician")
    doc2 = make_user("doc2", "physician")
    ac.grants.add_care(sec.principal, doc.id, "PSEUDO-A")
    uid = studies["PSEUDO-A"][0]
    assert ac.decide(doc.principal, uid, action="read").allowed
    assert not ac.decide(doc.principal, uid, action="export").allowed
    req = ac.approvals.request(doc.principal, "export_identified", uid)
    ac.approvals.vote(sec.principal, req.id, True)
    assert not ac.decide(doc.principal, uid, action="export").allowed  # one approver only
    ac.approvals.vote(doc2.principal, req.id, True)
    d = ac.decide(doc.principal, uid, action="export")
    assert d.allowed and d.level == "identified"


def test_store_permission_follows_policy(ac, make_user):
    assert ac.is_store_allowed(make_user("svc", "service").principal)
    assert ac.is_store_allowed(make_user("rad", "radiologist").principal)
    assert not ac.is_store_allowed(make_user("res", "researcher").principal)
    assert not ac.is_store_allowed(make_user("tp", "third_party").principal)
    assert not ac.is_store_allowed(make_user("pat", "patient").principal)


def test_unknown_action_is_refused(ac, make_user, studies, sec):
    doc = make_user("doc", "physician")
    ac.grants.add_care(sec.principal, doc.id, "PSEUDO-A")
    assert not ac.decide(doc.principal, studies["PSEUDO-A"][0], action="delete").allowed


def test_every_basis_on_sqlite_and_postgresql(database_url, tmp_path, clock, sink):
    """The same SQL (boolean tests, IN subqueries, time windows) on both databases."""
    from safepacs.access.service import AccessControl
    from safepacs.index import db
    from safepacs.index.models import Patient

    from .conftest import _HASH, Account

    engine = db.make_engine(database_url or f"sqlite:///{tmp_path / 'both.sqlite'}")
    try:
        db.upgrade(engine)
        ac = AccessControl(engine, tmp_path / "keys", audit=sink, clock=clock)
        uids = {}
        with Session(engine) as s, s.begin():
            for n, pid in enumerate(("PSEUDO-A", "PSEUDO-B"), start=1):
                p = Patient(patient_id=pid, patient_name="", birth_date="", sex="")
                s.add(p)
                s.flush()
                uids[pid] = f"2.25.{n}0001"
                s.add(Study(study_uid=uids[pid], patient_pk=p.pk))
            people = {}
            for name, role in (("sec", "security_admin"), ("doc", "physician"), ("res", "researcher"),
                               ("tp", "third_party"), ("svc", "service"), ("pat", "patient")):
                a = Account(username=name, role=role, password_hash=_HASH, totp_confirmed=False,
                            totp_last_step=0, must_change_password=False, failed_count=0,
                            disabled=False, created_by="t", created_at=clock.now)
                s.add(a)
                s.flush()
                people[name] = a.pk
        from safepacs.access.principal import Principal

        who = {n: Principal(pk, n, r) for (n, pk), r in zip(people.items(), (
            "security_admin", "physician", "researcher", "third_party", "service", "patient"), strict=True)}
        sec = who["sec"]
        end = clock.now + timedelta(days=1)
        ac.grants.add_care(sec, people["doc"], "PSEUDO-A", ends_at=end)
        proj = ac.grants.create_project(sec, "P", "x", end)
        ac.grants.add_member(sec, proj.id, people["res"])
        ac.grants.add_cohort(sec, proj.id, patient_ids=["PSEUDO-B"])
        ac.grants.create_grant(sec, people["tp"], [uids["PSEUDO-B"]], ends_at=end)
        ac.grants.create_service_grant(sec, people["svc"], ends_at=end)
        ac.grants.link_patient(sec, people["pat"], "PSEUDO-A")
        studies = {pid: [uid] for pid, uid in uids.items()}
        expected = {"doc": {uids["PSEUDO-A"]}, "res": {uids["PSEUDO-B"]}, "tp": {uids["PSEUDO-B"]},
                    "svc": set(uids.values()), "pat": {uids["PSEUDO-A"]}, "sec": set()}
        for name, seen in expected.items():
            assert assert_consistent(ac, who[name], studies) == seen, name
        clock.advance(days=1)
        for name in ("doc", "res", "tp", "svc"):
            assert assert_consistent(ac, who[name], studies) == set(), name
    finally:
        engine.dispose()
