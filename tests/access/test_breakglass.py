"""Break-glass: re-authentication, reason, alert at once, time box, review queue."""

from __future__ import annotations

import pytest

from safepacs.access.errors import AccessError, Forbidden, NotFound
from safepacs.audit.events import SECURITY_ALERT

from .conftest import PASSWORD


def test_break_glass_opens_the_patient_for_24h_alerts_and_queues(ac, make_user, studies, clock, sink):
    doc = make_user("doc", "physician")
    sec = make_user("sec", "security_admin")
    uid = studies["PSEUDO-B"][0]
    assert not ac.decide(doc.principal, uid).allowed
    e = ac.break_glass.start(doc.principal, uid, "patient_unconscious", "ED admission, no care team yet",
                             password=PASSWORD, code=doc.code(clock))
    alert = sink.events[-1]
    assert alert.event_id == SECURITY_ALERT and alert.patient == "PSEUDO-B" and alert.purpose == "emergency"
    assert "ED admission" not in alert.to_json()  # the justification is stored, not logged
    d = ac.decide(doc.principal, studies["PSEUDO-B"][1])  # the patient's other study too
    assert (d.allowed, d.level, d.basis, d.purpose) == (True, "identified", "break_glass", "emergency")
    assert not ac.decide(doc.principal, studies["PSEUDO-A"][0]).allowed
    assert [q.id for q in ac.break_glass.queue(sec.principal)] == [e.id]
    clock.advance(hours=24)
    assert not ac.decide(doc.principal, uid).allowed
    ac.break_glass.review(sec.principal, e.id, "justified")
    assert ac.break_glass.queue(sec.principal) == []


def test_break_glass_needs_reauthentication_and_a_known_reason(ac, make_user, studies, clock, sink):
    doc = make_user("doc", "radiologist")
    uid = studies["PSEUDO-A"][0]
    with pytest.raises(Forbidden):
        ac.break_glass.start(doc.principal, uid, "patient_unconscious", "x", password="wrong", code=doc.code(clock))
    with pytest.raises(Forbidden):
        ac.break_glass.start(doc.principal, uid, "patient_unconscious", "x", password=PASSWORD, code="000000")
    with pytest.raises(AccessError):
        ac.break_glass.start(doc.principal, uid, "curiosity", "x", password=PASSWORD, code=doc.code(clock))
    with pytest.raises(NotFound):
        ac.break_glass.start(doc.principal, "2.25.404", "imminent_risk", "x", password=PASSWORD,
                             code=doc.code(clock))
    assert not ac.decide(doc.principal, uid).allowed
    assert any(e.reason == "break-glass re-authentication failed" for e in sink.events)


@pytest.mark.parametrize("role", ["researcher", "third_party", "patient", "service", "security_admin"])
def test_only_clinicians_break_glass(ac, make_user, studies, clock, role):
    who = make_user("who", role, with_totp=True)
    with pytest.raises(Forbidden):
        ac.break_glass.start(who.principal, studies["PSEUDO-A"][0], "imminent_risk", "x",
                             password=PASSWORD, code=who.code(clock))


def test_unjustified_review_ends_access_and_only_security_admin_reviews(ac, make_user, studies, clock):
    doc = make_user("doc", "physician")
    sec = make_user("sec", "security_admin")
    aud = make_user("aud", "security_auditor")
    uid = studies["PSEUDO-A"][0]
    e = ac.break_glass.start(doc.principal, uid, "imminent_risk", "x", password=PASSWORD, code=doc.code(clock))
    for other in (doc, aud):
        with pytest.raises(Forbidden):
            ac.break_glass.review(other.principal, e.id, "justified")
    ac.break_glass.review(sec.principal, e.id, "unjustified")
    assert not ac.decide(doc.principal, uid).allowed
