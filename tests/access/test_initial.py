"""First run creates the three separated administrators with one-time passwords."""

from __future__ import annotations

import stat

import pytest

from safepacs.access import bootstrap
from safepacs.access.errors import Conflict


def test_bootstrap_creates_three_admins_once(engine, tmp_path, ac, sink):
    keys = tmp_path / "keys"
    created = bootstrap(engine, keys, audit=sink)
    assert set(created) == {"system_admin", "security_admin", "security_auditor"}
    assert len({u for u, _ in created.values()}) == 3
    assert stat.S_IMODE((keys / "access.key").stat().st_mode) == 0o600
    for role, (username, otp) in created.items():
        r = ac.login(username, otp)
        assert r.status == "password_change_required"
        who = ac.auth.authenticate(r.setup_token, setup=True)
        assert who.role == role
    assert all(otp not in e.to_json() for e in sink.events for _, otp in created.values())
    with pytest.raises(Conflict):
        bootstrap(engine, keys)
