"""Site access levels at the access core: only the security administrator defines them,
every change is versioned and audited, and projects and grants accept a level only as the
registry knows it (identity-revealing site levels are treated like ``identified``)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from safepacs.access.errors import AccessError, Conflict, Forbidden, NotFound
from safepacs.access.levels import LevelRegistry, exposes_identity
from safepacs.audit.events import CREATE, DELETE, UPDATE

TEACHING = {"header": "deidentified", "uids": "fresh", "dates": "remove", "pixels": "cleaned",
            "watermark": True, "keep": ["Modality", "BodyPartExamined", "Rows", "Columns", "PixelData"]}
IDENTIFIED_COPY = {"header": "original", "uids": "original", "dates": "original", "pixels": "original",
                   "watermark": True, "private_mark": True}


@pytest.fixture
def sec(make_user):
    return make_user("sec", "security_admin")


def test_security_admin_defines_changes_and_deletes_a_level_with_history(ac, sec, sink, clock):
    first = ac.levels.put(sec.principal, "teaching", TEACHING)
    assert (first["version"], first["changed"]) == (1, True)
    assert ac.levels.put(sec.principal, "teaching", dict(TEACHING))["changed"] is False  # same rules
    clock.advance(minutes=5)
    narrower = dict(TEACHING, keep=["Modality", "Rows", "Columns", "PixelData"])
    second = ac.levels.put(sec.principal, "teaching", narrower)
    assert second["version"] == 2 and second["digest"] != first["digest"]
    listed = {r["name"]: r for r in ac.levels.list(sec.principal)}
    assert listed["teaching"]["definition"]["keep"] == narrower["keep"] and not listed["teaching"]["builtin"]
    assert {"identified", "pseudonymised", "anonymised", "deidentified"} <= set(listed)
    assert ac.levels.delete(sec.principal, "teaching")["version"] == 3
    history = ac.levels.history(sec.principal, "teaching")
    assert [(h["version"], h["action"], h["changed_by"]) for h in history] == [
        (1, "create", "sec"), (2, "replace", "sec"), (3, "delete", "sec")]
    assert history[1]["previous"] == TEACHING and history[1]["definition"] == narrower
    assert history[2]["previous"] == narrower and history[2]["definition"] is None
    events = [e for e in sink.events if e.route.startswith(("PUT /api/levels", "DELETE /api/levels"))]
    assert [(e.action, e.detail["version"]) for e in events] == [(CREATE, 1), (UPDATE, 2), (DELETE, 3)]
    assert all(e.user == "sec" and e.level == "teaching" and e.outcome == 0 for e in events)
    with pytest.raises(NotFound):
        ac.levels.delete(sec.principal, "teaching")


@pytest.mark.parametrize("role", ["system_admin", "security_auditor", "physician", "third_party"])
def test_only_the_security_admin_may_change_levels(ac, make_user, sink, role):
    other = make_user("other", role)
    with pytest.raises(Forbidden):
        ac.levels.put(other.principal, "teaching", TEACHING)
    with pytest.raises(Forbidden):
        ac.levels.delete(other.principal, "teaching")
    assert sink.events[-1].outcome != 0 and "level.manage" in sink.events[-1].reason
    if role in ("system_admin", "security_auditor"):  # the administrators may read the policy
        assert "anonymised" in {r["name"] for r in ac.levels.list(other.principal)}
    else:
        with pytest.raises(Forbidden):
            ac.levels.list(other.principal)


@pytest.mark.parametrize(("name", "doc", "says"), [
    ("anonymised", TEACHING, "built-in"),
    ("teaching", dict(TEACHING, colour="red"), "unknown rule"),
    ("teaching", dict(TEACHING, dates="tomorrow"), "dates must be one of"),
    ("teaching", dict(TEACHING, keep=["NotAKeyword"]), "unknown keyword"),
    ("teaching", dict(TEACHING, watermark="yes"), "true or false"),
    ("teaching", dict(IDENTIFIED_COPY, watermark=False), "watermark"),
    ("teaching", dict(TEACHING, uids="original"), "de-identified header"),
    ("Teaching Level", TEACHING, "level name"),
    ("teaching", ["not", "an", "object"], "object"),
])
def test_invalid_definitions_are_refused_and_nothing_changes(ac, sec, sink, name, doc, says):
    before = len(sink.events)
    with pytest.raises(AccessError, match=says):
        ac.levels.put(sec.principal, name, doc)
    assert [r["name"] for r in ac.levels.list(sec.principal) if not r["builtin"]] == []
    assert ac.levels.history(sec.principal, "teaching") == []
    assert len(sink.events) == before


def test_grants_and_projects_take_registry_levels_only(ac, sec, make_user, studies, clock):
    tp = make_user("tp", "third_party")
    study = studies["PSEUDO-A"][0]
    with pytest.raises(AccessError, match="unknown access level"):
        ac.grants.create_grant(sec.principal, tp.id, [study], level="teaching")
    with pytest.raises(AccessError, match="unknown access level"):
        ac.grants.create_project(sec.principal, "P1", "x", clock.now + timedelta(days=1), level="teaching")
    ac.levels.put(sec.principal, "teaching", TEACHING)
    grant = ac.grants.create_grant(sec.principal, tp.id, [study], level="teaching")
    decision = ac.decide(tp.principal, study)
    assert (decision.allowed, decision.level, decision.grant_id) == (True, "teaching", grant.id)
    ac.grants.create_project(sec.principal, "P1", "x", clock.now + timedelta(days=1), level="teaching")
    # a level that re-keys per project cannot be a third party's (they have no project key)
    ac.levels.put(sec.principal, "research-lite", dict(TEACHING, uids="project", dates="project"))
    with pytest.raises(AccessError, match="project"):
        ac.grants.create_grant(sec.principal, tp.id, [study], level="research-lite")


def test_identity_revealing_site_levels_are_treated_like_identified(ac, sec, make_user, studies, clock):
    ac.levels.put(sec.principal, "legal-copy", IDENTIFIED_COPY)
    with pytest.raises(AccessError, match="reveal identity"):
        ac.grants.create_project(sec.principal, "P2", "x", clock.now + timedelta(days=1), level="legal-copy")
    assert exposes_identity(ac.ctx.engine, "legal-copy") and exposes_identity(ac.ctx.engine, "identified")
    assert exposes_identity(ac.ctx.engine, "no-such-level")  # unknown: fail closed
    assert not exposes_identity(ac.ctx.engine, "anonymised")
    # a level in use may not start revealing identity: its readers would get more than granted
    ac.levels.put(sec.principal, "teaching", TEACHING)
    tp = make_user("tp", "third_party")
    ac.grants.create_grant(sec.principal, tp.id, [studies["PSEUDO-A"][0]], level="teaching")
    with pytest.raises(Conflict, match="reveal"):
        ac.levels.put(sec.principal, "teaching", IDENTIFIED_COPY)


def test_identity_revealing_site_level_export_needs_approval(ac, sec, make_user, studies, engine, tmp_path, clock):
    import copy

    from safepacs.access.policy import parse
    from safepacs.access.service import AccessControl

    raw = copy.deepcopy(ac.policy.raw)  # a site whose third parties may export
    raw["actions"]["export"].append("third_party")
    site = AccessControl(engine, tmp_path / "keys", policy=parse(raw), clock=clock)
    site.levels.put(sec.principal, "legal-copy", IDENTIFIED_COPY)
    site.levels.put(sec.principal, "teaching", TEACHING)
    tp = make_user("tp", "third_party")
    a, b = studies["PSEUDO-A"][0], studies["PSEUDO-B"][0]
    site.grants.create_grant(sec.principal, tp.id, [a], level="legal-copy")
    site.grants.create_grant(sec.principal, tp.id, [b], level="teaching")
    assert site.decide(tp.principal, a).level == "legal-copy"
    refused = site.decide(tp.principal, a, action="export")
    assert not refused.allowed and "approved" in refused.reason
    assert site.decide(tp.principal, b, action="export").allowed


def test_a_level_in_use_cannot_be_deleted_until_its_grants_end(ac, sec, make_user, studies, clock):
    ac.levels.put(sec.principal, "teaching", TEACHING)
    tp = make_user("tp", "third_party")
    grant = ac.grants.create_grant(sec.principal, tp.id, [studies["PSEUDO-A"][0]], level="teaching")
    with pytest.raises(Conflict, match="in use"):
        ac.levels.delete(sec.principal, "teaching")
    with pytest.raises(AccessError, match="built-in"):
        ac.levels.delete(sec.principal, "anonymised")
    ac.grants.revoke_grant(sec.principal, grant.id)
    clock.advance(seconds=1)
    ac.levels.delete(sec.principal, "teaching")
    assert not ac.decide(tp.principal, studies["PSEUDO-A"][0]).allowed  # the grant ended anyway


def test_registry_sees_changes_at_once_in_its_process_and_within_its_ttl_elsewhere(ac, sec, engine, clock):
    here = LevelRegistry(engine, ttl=60)
    ac.ctx.listeners.append(here.forget)
    elsewhere = LevelRegistry(engine, ttl=0.0)  # another process: reads each time its copy is old
    stale = LevelRegistry(engine, ttl=3600)
    assert here.get("teaching") is None and stale.get("teaching") is None
    ac.levels.put(sec.principal, "teaching", TEACHING)
    assert here.get("teaching").keep == tuple(TEACHING["keep"])
    assert elsewhere.get("teaching").version.startswith("1:")
    assert stale.get("teaching") is None  # within its TTL: the copy it read
    ac.levels.put(sec.principal, "teaching", dict(TEACHING, keep=["Modality"]))
    assert here.get("teaching").keep == ("Modality",) and here.get("teaching").version.startswith("2:")
    assert here.get("teaching").cache_name != "teaching"


def test_a_stored_definition_this_version_cannot_read_is_treated_as_absent(ac, sec, engine):
    from sqlalchemy import update

    from safepacs.access.level_models import SiteLevel

    ac.levels.put(sec.principal, "teaching", TEACHING)
    with engine.begin() as conn:
        conn.execute(update(SiteLevel).values(definition=json.dumps(dict(TEACHING, future_rule=1))))
    assert LevelRegistry(engine).get("teaching") is None
    tp_doc = {r["name"] for r in ac.levels.list(sec.principal)}
    assert "teaching" in tp_doc  # still listed for the administrator to repair
