"""Login, second factor, first-login steps, lockout, rate limit, JWT checks, refresh
rotation with reuse detection, logout."""

from __future__ import annotations

import copy

import jwt
import pytest
from sqlalchemy.orm import Session

from safepacs.access import tokens as tk
from safepacs.access import totp
from safepacs.access.accounts import new_account
from safepacs.access.errors import Forbidden, TooManyAttempts, Unauthenticated
from safepacs.access.models import Account
from safepacs.access.policy import load, parse
from safepacs.access.service import AccessControl
from safepacs.audit.events import SECURITY_ALERT, USER_AUTHENTICATION

from .conftest import PASSWORD


def test_login_with_password_and_totp_gives_working_tokens(ac, make_user, clock, sink):
    doc = make_user("doc", "physician")
    r = ac.login("doc", PASSWORD, doc.code(clock), address="10.0.0.5")
    assert r.status == "ok" and r.expires_in == 15 * 60 and r.refresh_token.startswith("spr_")
    who = ac.authenticate(r.access_token, address="10.0.0.5")
    assert (who.account_id, who.username, who.role, who.via) == (doc.id, "doc", "physician", "password")
    ev = [e for e in sink.events if e.event_id == USER_AUTHENTICATION][-1]
    assert ev.outcome == 0 and ev.user == "doc" and ev.address == "10.0.0.5"
    assert PASSWORD not in "".join(e.to_json() for e in sink.events)


def test_totp_required_and_not_reusable(ac, make_user, clock):
    doc = make_user("doc", "physician")
    with pytest.raises(Unauthenticated):
        ac.login("doc", PASSWORD, "")
    code = doc.code(clock)
    assert ac.login("doc", PASSWORD, code).status == "ok"
    with pytest.raises(Unauthenticated):  # the same code again
        ac.login("doc", PASSWORD, code)


def test_wrong_password_and_unknown_user_answer_alike_and_are_audited(ac, make_user, sink):
    make_user("res", "researcher")
    msgs = []
    for name, pw in (("res", "wrong password!"), ("nobody", PASSWORD)):
        with pytest.raises(Unauthenticated) as exc:
            ac.login(name, pw, address="10.1.1.1")
        msgs.append(str(exc.value))
    assert msgs[0] == msgs[1]
    failures = [e for e in sink.events if e.event_id == USER_AUTHENTICATION and e.outcome]
    assert [e.reason for e in failures] == ["wrong password", "unknown account"]
    assert failures[1].user == "unknown"  # a typed name is not echoed


def test_lockout_after_repeated_failures_even_with_right_password(ac, make_user, clock, sink):
    make_user("res", "researcher")
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            ac.login("res", "not the password", address=f"10.0.0.{_}")
    assert any(e.event_id == SECURITY_ALERT and "locked" in e.reason for e in sink.events)
    with pytest.raises(Unauthenticated):
        ac.login("res", PASSWORD)
    clock.advance(minutes=15)
    assert ac.login("res", PASSWORD).status == "ok"


def test_per_address_rate_limit(engine, tmp_path, clock, sink, make_user):
    raw = copy.deepcopy(load().raw)
    raw["defaults"]["address_failures_per_window"] = 4
    ac = AccessControl(engine, tmp_path / "keys", audit=sink, clock=clock, policy=parse(raw))
    make_user("res", "researcher")
    for i in range(4):
        with pytest.raises(Unauthenticated):
            ac.login(f"user{i}", "x" * 12, address="192.0.2.9")
    with pytest.raises(TooManyAttempts):
        ac.login("res", PASSWORD, address="192.0.2.9")
    assert ac.login("res", PASSWORD, address="192.0.2.10").status == "ok"  # another address
    clock.advance(minutes=6)
    assert ac.login("res", PASSWORD, address="192.0.2.9").status == "ok"


def test_first_login_requires_password_change_with_a_setup_token(ac, clock):
    with Session(ac.ctx.engine) as s, s.begin():
        acct, otp = new_account(s, "newres", "researcher", "test", clock.now)
    r = ac.login("newres", otp)
    assert r.status == "password_change_required" and r.setup_token and not r.access_token
    assert ac.authenticate(r.setup_token) is None  # not a full token
    who = ac.auth.authenticate(r.setup_token, setup=True)
    with pytest.raises(Exception, match="at least 12"):
        ac.auth.change_password(who, otp, "short")
    ac.auth.change_password(who, otp, "a much better passphrase")
    r2 = ac.login("newres", "a much better passphrase")
    assert r2.status == "ok" and ac.authenticate(r2.access_token).username == "newres"


def test_admin_must_enrol_totp_before_full_login(ac, clock):
    with Session(ac.ctx.engine) as s, s.begin():
        acct, otp = new_account(s, "secadm", "security_admin", "test", clock.now)
    setup = ac.auth.authenticate(ac.login("secadm", otp).setup_token, setup=True)
    ac.auth.change_password(setup, otp, "new admin passphrase 1")
    r = ac.login("secadm", "new admin passphrase 1")
    assert r.status == "totp_enrolment_required"
    setup = ac.auth.authenticate(r.setup_token, setup=True)
    uri = ac.auth.enrol_totp(setup)
    assert uri.startswith("otpauth://totp/") and "issuer=safepacs" in uri
    secret = uri.split("secret=")[1].split("&")[0]
    with pytest.raises(Forbidden):
        ac.auth.confirm_totp(setup, "000000" if totp.code_at(secret, clock.now) != "000000" else "111111")
    ac.auth.confirm_totp(setup, totp.code_at(secret, clock.now))
    with pytest.raises(Forbidden):  # enrolment is once; a reset is the system admin's job
        ac.auth.enrol_totp(setup)
    clock.advance(seconds=30)
    r = ac.login("secadm", "new admin passphrase 1", totp.code_at(secret, clock.now))
    assert r.status == "ok"
    with Session(ac.ctx.engine) as s:
        sealed = s.get(Account, setup.account_id).totp_sealed
    assert secret.encode() not in sealed


def test_expired_forged_and_other_audience_tokens_are_refused(ac, make_user, clock, sink):
    res = make_user("res", "researcher")
    good = ac.login("res", PASSWORD).access_token
    assert ac.authenticate(good) is not None
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode({**claims, "role": "service"}, b"k" * 32, algorithm="HS256")
    other_aud = jwt.encode({**claims, "aud": "another-app"}, ac.ctx.keys.jwt, algorithm="HS256")
    none_alg = jwt.encode(claims, None, algorithm="none")
    for bad in (forged, other_aud, none_alg, good + "x", "garbage", ""):
        assert ac.authenticate(bad) is None
    reasons = {e.reason for e in sink.events if e.event_id == USER_AUTHENTICATION and e.outcome}
    assert {"bad token signature", "token for another audience"} <= reasons
    clock.advance(minutes=15)
    assert ac.authenticate(good) is None
    assert "expired token" in {e.reason for e in sink.events}
    assert claims["sub"] == str(res.id) and claims["aud"] == tk.AUDIENCE


def test_token_of_changed_role_or_disabled_account_is_refused(ac, make_user):
    sys = make_user("sys", "system_admin")
    res = make_user("res", "researcher")
    token = ac.login("res", PASSWORD).access_token
    ac.accounts.set_role(sys.principal, res.id, "third_party")
    assert ac.authenticate(token) is None
    token = ac.login("res", PASSWORD).access_token
    ac.accounts.set_disabled(sys.principal, res.id)
    assert ac.authenticate(token) is None
    with pytest.raises(Unauthenticated):
        ac.login("res", PASSWORD)


def test_refresh_rotates_and_replay_revokes_the_whole_family(ac, make_user, sink):
    make_user("res", "researcher")
    first = ac.login("res", PASSWORD)
    second = ac.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    third = ac.refresh(second.refresh_token)
    assert ac.authenticate(third.access_token) is not None
    with pytest.raises(Unauthenticated):
        ac.refresh(first.refresh_token)  # replay of a used token
    assert any(e.event_id == SECURITY_ALERT and "replayed" in e.reason for e in sink.events)
    with pytest.raises(Unauthenticated):
        ac.refresh(third.refresh_token)  # the family is gone
    assert ac.authenticate(third.access_token) is None
    assert ac.authenticate(first.access_token) is None


def test_other_sessions_survive_a_replay(ac, make_user):
    make_user("res", "researcher")
    a, b = ac.login("res", PASSWORD), ac.login("res", PASSWORD)
    ac.refresh(a.refresh_token)
    with pytest.raises(Unauthenticated):
        ac.refresh(a.refresh_token)
    assert ac.authenticate(b.access_token) is not None
    assert ac.refresh(b.refresh_token).status == "ok"


def test_refresh_token_expires(ac, make_user, clock):
    make_user("res", "researcher")
    r = ac.login("res", PASSWORD)
    clock.advance(hours=12)
    with pytest.raises(Unauthenticated):
        ac.refresh(r.refresh_token)


def test_logout_ends_access_and_refresh(ac, make_user):
    make_user("res", "researcher")
    r = ac.login("res", PASSWORD)
    who = ac.authenticate(r.access_token)
    ac.logout(who)
    assert ac.authenticate(r.access_token) is None
    with pytest.raises(Unauthenticated):
        ac.refresh(r.refresh_token)


def test_password_change_ends_other_sessions(ac, make_user):
    make_user("res", "researcher")
    r = ac.login("res", PASSWORD)
    who = ac.authenticate(r.access_token)
    with pytest.raises(Forbidden):
        ac.auth.change_password(who, "wrong old password", "another fine passphrase")
    ac.auth.change_password(who, PASSWORD, "another fine passphrase")
    assert ac.authenticate(r.access_token) is None


def test_service_api_token(ac, make_user, clock):
    sys = make_user("sys", "system_admin")
    svc = make_user("svc", "service")
    token = ac.accounts.create_api_token(sys.principal, svc.id, "pacs-feed")
    assert token.startswith(tk.API_TOKEN_PREFIX)
    who = ac.authenticate(token, address="10.9.9.9")
    assert (who.role, who.via, who.account_id) == ("service", "api-token", svc.id)
    ac.accounts.set_disabled(sys.principal, svc.id)
    assert ac.authenticate(token) is None
    res = make_user("res", "researcher")
    with pytest.raises(Forbidden):
        ac.accounts.create_api_token(sys.principal, res.id, "nope")


def test_dimse_user_identity(ac, make_user):
    make_user("svc", "service")
    make_user("doc", "physician")
    assert ac.authenticate_dimse(username="svc", password=PASSWORD).via == "dimse"
    assert ac.authenticate_dimse(username="svc", password="wrong") is None
    assert ac.authenticate_dimse(username="doc", password=PASSWORD) is None  # needs 2FA: token only
    tok = ac.login("svc", PASSWORD).access_token
    assert ac.authenticate_dimse(token=tok).role == "service"
