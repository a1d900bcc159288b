"""JWT access tokens and opaque tokens (pure functions, injected time)."""

from __future__ import annotations

from datetime import datetime, timedelta

import jwt
import pytest

from safepacs.access import tokens as tk

KEY = b"\x07" * 32
NOW = datetime(2026, 1, 1, 12, 0, 0)


def issue(**kw):
    args = dict(account_id=7, username="res", role="researcher", family="fam1", scope="full",
                via="password", now=NOW, minutes=15)
    args.update(kw)
    return tk.issue_access(KEY, **args)


def test_round_trip_and_claims():
    token, claims = issue()
    back = tk.verify_access(KEY, token, NOW + timedelta(minutes=14, seconds=59))
    assert back == claims and back.jti.startswith("fam1:") and back.expires == NOW + timedelta(minutes=15)
    data = jwt.decode(token, options={"verify_signature": False})
    assert data["iss"] == tk.ISSUER and data["aud"] == tk.AUDIENCE and jwt.get_unverified_header(token)["alg"] == "HS256"


def test_expiry_is_exact():
    token, _ = issue()
    with pytest.raises(tk.TokenInvalid, match="expired"):
        tk.verify_access(KEY, token, NOW + timedelta(minutes=15))


def test_not_yet_valid():
    token, _ = issue(now=NOW + timedelta(hours=1))
    with pytest.raises(tk.TokenInvalid, match="not yet"):
        tk.verify_access(KEY, token, NOW)


@pytest.mark.parametrize("change, reason", [
    ({"aud": "other"}, "audience"), ({"iss": "evil"}, "issuer"), ({"scope": "root"}, "malformed")])
def test_claims_are_checked(change, reason):
    token, _ = issue()
    data = {**jwt.decode(token, options={"verify_signature": False}), **change}
    with pytest.raises(tk.TokenInvalid, match=reason):
        tk.verify_access(KEY, jwt.encode(data, KEY, algorithm="HS256"), NOW)


def test_other_key_and_algorithms_are_refused():
    token, _ = issue()
    data = jwt.decode(token, options={"verify_signature": False})
    with pytest.raises(tk.TokenInvalid, match="signature"):
        tk.verify_access(b"\x08" * 32, token, NOW)
    for alg in ("HS384", "HS512", "none"):
        other = jwt.encode(data, None if alg == "none" else KEY + KEY, algorithm=alg)
        with pytest.raises(tk.TokenInvalid):
            tk.verify_access(KEY, other, NOW)
    missing = {k: v for k, v in data.items() if k != "jti"}
    with pytest.raises(tk.TokenInvalid):
        tk.verify_access(KEY, jwt.encode(missing, KEY, algorithm="HS256"), NOW)


def test_opaque_tokens_are_random_and_hashed():
    a, b = tk.new_opaque(tk.REFRESH_PREFIX), tk.new_opaque(tk.REFRESH_PREFIX)
    assert a != b and a.startswith("spr_") and len(a) > 40
    assert tk.digest(a) != tk.digest(b) and len(tk.digest(a)) == 64 and a not in tk.digest(a)
