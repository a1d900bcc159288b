"""Data-access administration: only the security administrator, only to matching data
roles, never to oneself."""

from __future__ import annotations

from datetime import timedelta

import pytest

from safepacs.access.errors import AccessError, Forbidden
from safepacs.access.principal import DATA_ROLES
from safepacs.audit.events import SECURITY_ALERT


def test_grant_changes_are_audited_with_pseudonyms_only(ac, make_user, sink):
    sec = make_user("sec", "security_admin")
    doc = make_user("doc", "physician")
    ac.grants.add_care(sec.principal, doc.id, "PSEUDO-A")
    ev = sink.events[-1]
    assert ev.event_id == SECURITY_ALERT and ev.patient == "PSEUDO-A" and ev.user == "sec"


@pytest.mark.parametrize("role", ["system_admin", "security_auditor", *DATA_ROLES])
def test_only_security_admin_grants(ac, make_user, clock, role):
    actor = make_user("actor", role)
    doc = make_user("doc", "physician")
    tp = make_user("tp", "third_party")
    for call in (lambda: ac.grants.add_care(actor.principal, doc.id, "PSEUDO-A"),
                 lambda: ac.grants.create_grant(actor.principal, tp.id, ["2.25.1"]),
                 lambda: ac.grants.create_project(actor.principal, "P", "x", clock.now + timedelta(days=1))):
        with pytest.raises(Forbidden):
            call()


def test_grants_go_only_to_accounts_of_the_matching_role(ac, make_user):
    sec = make_user("sec", "security_admin")
    sec2 = make_user("sec2", "security_admin")
    res = make_user("res", "researcher")
    with pytest.raises(Forbidden):
        ac.grants.add_care(sec.principal, res.id, "PSEUDO-A")  # researchers have no care
    with pytest.raises(Forbidden):
        ac.grants.add_care(sec.principal, sec2.id, "PSEUDO-A")  # admins get no data access
    with pytest.raises(Forbidden):
        ac.grants.create_grant(sec.principal, res.id, ["2.25.1"])
    with pytest.raises(Forbidden):
        ac.grants.create_service_grant(sec.principal, res.id)


def test_self_grant_is_refused(ac, make_user, sink):
    sec = make_user("sec", "security_admin")
    with pytest.raises(Forbidden, match="own"):
        ac.grants.add_care(sec.principal, sec.id, "PSEUDO-A")
    with pytest.raises(Forbidden, match="own"):
        ac.grants.create_grant(sec.principal, sec.id, ["2.25.1"])
    assert sink.events[-1].outcome != 0


def test_malformed_values_are_refused(ac, make_user, clock):
    sec = make_user("sec", "security_admin")
    doc = make_user("doc", "physician")
    tp = make_user("tp", "third_party")
    with pytest.raises(AccessError):
        ac.grants.add_care(sec.principal, doc.id, "SMITH^JOHN")
    with pytest.raises(AccessError):
        ac.grants.create_grant(sec.principal, tp.id, ["1.2.*"])
    with pytest.raises(AccessError):
        ac.grants.add_care(sec.principal, doc.id, "PSEUDO-A", ends_at=clock.now - timedelta(days=1))
    with pytest.raises(AccessError):
        ac.grants.create_project(sec.principal, "P1", "x", clock.now + timedelta(days=1), level="identified")


def test_access_listing(ac, make_user, clock):
    sec = make_user("sec", "security_admin")
    doc = make_user("doc", "physician")
    ac.grants.add_care(sec.principal, doc.id, "PSEUDO-A")
    listing = ac.grants.list_for(sec.principal, doc.id)
    assert [c["patient"] for c in listing["care"]] == ["PSEUDO-A"]
