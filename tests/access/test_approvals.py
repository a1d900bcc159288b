"""Multi-party approval: security administrator plus a second, different approver."""

from __future__ import annotations

import pytest

from safepacs.access.approvals import tally
from safepacs.access.errors import AccessError, Conflict, Forbidden, NotFound


def test_tally_rules():
    assert tally(2, "security_admin", 1, []) == "pending"
    assert tally(2, "security_admin", 1, [(2, "security_admin", True)]) == "pending"
    assert tally(2, "security_admin", 1, [(2, "security_admin", True), (3, "physician", True)]) == "approved"
    assert tally(2, "security_admin", 1, [(2, "physician", True), (3, "physician", True)]) == "pending"
    assert tally(2, "security_admin", 1, [(1, "security_admin", True), (3, "physician", True)]) == "pending"
    assert tally(2, "security_admin", 1, [(2, "security_admin", True), (3, "physician", False)]) == "denied"


def test_two_different_approvers_including_security_admin(ac, make_user, clock):
    doc = make_user("doc", "physician")
    sec = make_user("sec", "security_admin")
    rad = make_user("rad", "radiologist")
    req = ac.approvals.request(doc.principal, "bulk_reidentify", "LUNG-01")
    assert req.status == "pending"
    with pytest.raises(Forbidden):
        ac.approvals.vote(doc.principal, req.id, True)  # not the requester
    assert ac.approvals.vote(rad.principal, req.id, True).status == "pending"  # no security admin yet
    with pytest.raises(Conflict):
        ac.approvals.vote(rad.principal, req.id, True)  # one vote each
    assert not ac.approvals.is_approved("bulk_reidentify", "LUNG-01", doc.id)
    assert ac.approvals.vote(sec.principal, req.id, True).status == "approved"
    assert ac.approvals.is_approved("bulk_reidentify", "LUNG-01", doc.id)
    assert not ac.approvals.is_approved("bulk_reidentify", "LUNG-02", doc.id)
    assert not ac.approvals.is_approved("bulk_reidentify", "LUNG-01", rad.id)
    assert ac.approvals.status(doc.principal, req.id).status == "approved"
    clock.advance(hours=72)
    assert not ac.approvals.is_approved("bulk_reidentify", "LUNG-01", doc.id)  # approvals expire


def test_security_admin_request_needs_another_approver(ac, make_user):
    sec = make_user("sec", "security_admin")
    sec2 = make_user("sec2", "security_admin")
    req = ac.approvals.request(sec.principal, "export_identified", "2.25.1")
    with pytest.raises(Forbidden):
        ac.approvals.vote(sec.principal, req.id, True)
    assert ac.approvals.vote(sec2.principal, req.id, True).status == "pending"


def test_one_refusal_denies(ac, make_user):
    doc = make_user("doc", "physician")
    sec = make_user("sec", "security_admin")
    rad = make_user("rad", "radiologist")
    req = ac.approvals.request(doc.principal, "export_identified", "2.25.1")
    assert ac.approvals.vote(sec.principal, req.id, False).status == "denied"
    with pytest.raises(Conflict):
        ac.approvals.vote(rad.principal, req.id, True)
    assert not ac.approvals.is_approved("export_identified", "2.25.1", doc.id)


def test_who_may_request_vote_and_see(ac, make_user):
    aud = make_user("aud", "security_auditor")
    sysadm = make_user("sys", "system_admin")
    tp = make_user("tp", "third_party")
    doc = make_user("doc", "physician")
    for who in (aud, sysadm, tp):
        with pytest.raises(Forbidden):
            ac.approvals.request(who.principal, "export_identified", "2.25.1")
    req = ac.approvals.request(doc.principal, "export_identified", "2.25.1")
    for who in (aud, sysadm, tp):
        with pytest.raises(Forbidden):
            ac.approvals.vote(who.principal, req.id, True)
    with pytest.raises(NotFound):
        ac.approvals.status(tp.principal, req.id)
    with pytest.raises(AccessError):
        ac.approvals.request(doc.principal, "delete_everything", "2.25.1")
