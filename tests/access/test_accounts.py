"""Account administration and role separation in the service layer."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from safepacs.access.errors import AccessError, Conflict, Forbidden
from safepacs.access.principal import ADMIN_ROLES, DATA_ROLES
from safepacs.audit.events import SECURITY_ALERT


def test_system_admin_creates_accounts_with_one_time_passwords(ac, make_user, sink):
    sys = make_user("sys", "system_admin")
    view, otp = ac.accounts.create(sys.principal, "drwho", "physician")
    assert view.role == "physician" and view.must_change_password and len(otp) >= 16
    assert ac.login("drwho", otp).status == "password_change_required"
    ev = [e for e in sink.events if e.reason == "account created"][-1]
    assert ev.event_id == SECURITY_ALERT and ev.user == "sys" and otp not in ev.to_json()
    with pytest.raises(Conflict):
        ac.accounts.create(sys.principal, "drwho", "researcher")
    with pytest.raises(AccessError):
        ac.accounts.create(sys.principal, "Bad Name!", "researcher")


@pytest.mark.parametrize("role", ["security_admin", "security_auditor", *DATA_ROLES])
def test_only_system_admin_manages_accounts(ac, make_user, role):
    other = make_user("other", role)
    target = make_user("target", "researcher")
    for call in (lambda: ac.accounts.create(other.principal, "x1", "researcher"),
                 lambda: ac.accounts.list(other.principal),
                 lambda: ac.accounts.set_disabled(other.principal, target.id),
                 lambda: ac.accounts.reset(other.principal, target.id),
                 lambda: ac.accounts.set_role(other.principal, target.id, "physician")):
        with pytest.raises(Forbidden):
            call()


@pytest.mark.parametrize("admin_role", ADMIN_ROLES)
def test_administrator_role_can_never_be_changed_or_given(ac, make_user, admin_role):
    sys = make_user("sys", "system_admin")
    admin = make_user("adm", admin_role)
    res = make_user("res", "researcher")
    for new in (*ADMIN_ROLES, *DATA_ROLES):
        with pytest.raises(Forbidden):
            ac.accounts.set_role(sys.principal, admin.id, new)
    for new in ADMIN_ROLES:
        with pytest.raises(Forbidden):
            ac.accounts.set_role(sys.principal, res.id, new)


def test_no_account_changes_its_own_role_or_state(ac, make_user, sink):
    sys = make_user("sys", "system_admin")
    for call in (lambda: ac.accounts.set_role(sys.principal, sys.id, "physician"),
                 lambda: ac.accounts.reset(sys.principal, sys.id),
                 lambda: ac.accounts.set_disabled(sys.principal, sys.id, False)):
        with pytest.raises(Forbidden):
            call()
    assert any("own account" in e.reason for e in sink.events)


def test_data_role_change_ends_sessions_and_unlinks_patient(ac, make_user):
    sys = make_user("sys", "system_admin")
    pat = make_user("pat", "patient", patient="PSEUDO-A")
    view = ac.accounts.set_role(sys.principal, pat.id, "third_party")
    assert view.role == "third_party"
    from safepacs.access.models import Account

    with Session(ac.ctx.engine) as s:
        assert s.get(Account, pat.id).patient_pseudonym is None


def test_database_refuses_unknown_role_and_holds_one_role_per_account(ac, make_user):
    make_user("res", "researcher")
    with pytest.raises(IntegrityError), Session(ac.ctx.engine) as s, s.begin():
        s.execute(text("UPDATE access_accounts SET role = 'system_admin,security_admin' WHERE username = 'res'"))


def test_reset_clears_second_factor_and_lock(ac, make_user, clock):
    sys = make_user("sys", "system_admin")
    doc = make_user("doc", "physician")
    otp = ac.accounts.reset(sys.principal, doc.id)
    r = ac.login("doc", otp)  # no TOTP asked: it was cleared
    assert r.status == "password_change_required"
    views = {v.username: v for v in ac.accounts.list(sys.principal)}
    assert not views["doc"].totp_enrolled and views["doc"].must_change_password


def test_oidc_link_only_for_data_accounts(ac, make_user):
    sys = make_user("sys", "system_admin")
    sec = make_user("sec", "security_admin")
    doc = make_user("doc", "physician")
    ac.accounts.link_oidc(sys.principal, doc.id, "subject-1")
    with pytest.raises(Forbidden):
        ac.accounts.link_oidc(sys.principal, sec.id, "subject-2")
    res = make_user("res", "researcher")
    with pytest.raises(Conflict):
        ac.accounts.link_oidc(sys.principal, res.id, "subject-1")
