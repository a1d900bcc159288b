"""A level that re-keys per research project (``pseudonymised``, or a site level with
``project`` UIDs or dates) is only ever a project's: a grant has no project key.  A grant at
one is refused when it is made, with a message saying what to do, and nothing is stored; a
grant at one stored anyway (by an older version, or under a level changed behind the desk's
back) opens nothing: ``decide`` refuses and audits it, the listing leaves its studies out,
and a valid grant beside it is still served at its own level."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from safepacs.access.errors import AccessError
from safepacs.access.level_models import SiteLevel
from safepacs.access.levels import canonical, digest
from safepacs.access.models import Grant, GrantStudy
from safepacs.audit.events import INSTANCES_ACCESSED, MINOR_FAILURE, SECURITY_ALERT
from safepacs.index.models import Study

_SITE = {"header": "deidentified", "pixels": "cleaned", "watermark": True}
KEYED_UIDS = dict(_SITE, uids="project", dates="remove")
KEYED_DATES = dict(_SITE, uids="fresh", dates="project")
FRESH = dict(_SITE, uids="fresh", dates="remove")


@pytest.fixture
def sec(make_user):
    return make_user("sec", "security_admin")


@pytest.fixture
def tp(make_user):
    return make_user("tp", "third_party")


def visible(ac, who) -> set[str]:
    with Session(ac.ctx.engine) as s:
        return set(s.scalars(select(Study.study_uid).where(ac.visible_studies(who))))


def stored_grants(ac) -> tuple[int, int]:
    with Session(ac.ctx.engine) as s:
        return (s.scalar(select(func.count()).select_from(Grant)),
                s.scalar(select(func.count()).select_from(GrantStudy)))


def grant_row(ac, account: int, level: str, study_uids: list[str], clock, *, all_studies: bool = False) -> int:
    """A grant written straight into the index, as an older version could have made it."""
    with Session(ac.ctx.engine) as s, s.begin():
        row = Grant(account_pk=account, level=level, all_studies=all_studies, starts_at=clock.now,
                    ends_at=clock.now + timedelta(days=7), created_by="old-version", created_at=clock.now)
        s.add(row)
        s.flush()
        s.add_all(GrantStudy(grant_pk=row.pk, study_uid=u) for u in study_uids)
        return row.pk


@pytest.mark.parametrize(("level", "definition"), [("pseudonymised", None), ("keyed-uids", KEYED_UIDS),
                                                   ("keyed-dates", KEYED_DATES)])
def test_grant_at_a_project_keyed_level_is_refused_and_nothing_is_stored(
        ac, sec, tp, studies, sink, clock, level, definition):
    if definition is not None:
        ac.levels.put(sec.principal, level, definition)
    study = studies["PSEUDO-A"][0]
    before = len(sink.events)
    with pytest.raises(AccessError) as refusal:
        ac.grants.create_grant(sec.principal, tp.id, [study], level=level)
    assert str(refusal.value).startswith(f"level '{level}' needs a research project")
    assert "project's level" in str(refusal.value) and refusal.value.status == 400
    assert stored_grants(ac) == (0, 0)
    assert not [e for e in sink.events[before:] if e.event_id == SECURITY_ALERT and e.reason == "grant created"]
    assert not ac.decide(tp.principal, study).allowed and visible(ac, tp.principal) == set()
    # the same level is what a research project is for
    project = ac.grants.create_project(sec.principal, "P1", "x", clock.now + timedelta(days=1), level=level)
    assert project.id > 0


def test_grant_at_a_level_that_does_not_re_key_is_still_made(ac, sec, tp, studies):
    ac.levels.put(sec.principal, "fresh-copy", FRESH)
    study = studies["PSEUDO-B"][0]
    made = ac.grants.create_grant(sec.principal, tp.id, [study], level="fresh-copy")
    decision = ac.decide(tp.principal, study)
    assert (decision.allowed, decision.level, decision.grant_id) == (True, "fresh-copy", made.id)
    assert stored_grants(ac) == (1, 1)


def test_stored_pseudonymised_grant_opens_nothing_and_the_refusal_is_audited(ac, tp, studies, sink, clock):
    study = studies["PSEUDO-A"][0]
    grant_row(ac, tp.id, "pseudonymised", [study], clock)
    decision = ac.decide(tp.principal, study)
    assert (decision.allowed, decision.level, decision.basis, decision.project) == (False, None, "none", None)
    assert "'pseudonymised' needs a research project" in decision.reason
    event = sink.events[-1]
    assert (event.event_id, event.outcome, event.user, event.study_uid) == (
        INSTANCES_ACCESSED, MINOR_FAILURE, "tp", study)
    assert "needs a research project" in event.reason and event.level == ""
    assert visible(ac, tp.principal) == set()
    assert not ac.decide(tp.principal, study, action="query").allowed


def test_a_valid_grant_beside_a_stored_project_keyed_one_is_served_at_its_own_level(
        ac, sec, tp, studies, clock):
    study = studies["PSEUDO-A"][1]
    grant_row(ac, tp.id, "pseudonymised", [study], clock)  # the older row: looked at first
    valid = ac.grants.create_grant(sec.principal, tp.id, [study], level="anonymised")
    decision = ac.decide(tp.principal, study)
    assert (decision.allowed, decision.level, decision.grant_id, decision.project) == (
        True, "anonymised", valid.id, None)
    assert visible(ac, tp.principal) == {study}
    ac.grants.revoke_grant(sec.principal, valid.id)
    assert not ac.decide(tp.principal, study).allowed and visible(ac, tp.principal) == set()


def test_service_grant_is_read_at_the_policy_level_whatever_its_row_says(ac, make_user, studies, clock):
    """The policy fixes the service level (deidentified); the row's level is not used, so a
    row at a project-keyed level neither changes the decision nor the listing."""
    svc = make_user("svc", "service")
    grant_row(ac, svc.id, "pseudonymised", [], clock, all_studies=True)
    decision = ac.decide(svc.principal, studies["PSEUDO-B"][1])
    assert (decision.allowed, decision.level, decision.basis) == (True, "deidentified", "service")
    assert visible(ac, svc.principal) == {u for uids in studies.values() for u in uids}


def test_site_level_turned_project_keyed_under_a_grant_opens_nothing(ac, sec, tp, studies):
    """The level desk refuses this change while the level is granted; a definition changed
    around it (another version, a hand edit) is caught when read."""
    ac.levels.put(sec.principal, "fresh-copy", FRESH)
    study = studies["PSEUDO-B"][1]
    ac.grants.create_grant(sec.principal, tp.id, [study], level="fresh-copy")
    assert ac.decide(tp.principal, study).allowed
    text = canonical(KEYED_UIDS)
    with Session(ac.ctx.engine) as s, s.begin():
        s.execute(update(SiteLevel).where(SiteLevel.name == "fresh-copy")
                  .values(definition=text, digest=digest(text), version=SiteLevel.version + 1))
    ac.ctx.notify(level="fresh-copy")  # as a level change does: decisions read levels again
    decision = ac.decide(tp.principal, study)
    assert not decision.allowed and "'fresh-copy' needs a research project" in decision.reason
    assert visible(ac, tp.principal) == set()
