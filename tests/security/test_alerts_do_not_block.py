"""Regression: a security alert raised while the access layer held its SQLite write
transaction waited for its own durable audit write, which needed that very lock -- the
request hung for minutes (30 s busy timeout x 30 retries).  Found by the attack suite on a
replayed refresh token; the same shape was in the lockout, self-approval and role-change
refusals.  Each must now answer at once and leave its alert in the trail."""

from __future__ import annotations

import httpx

from tests.security.conftest import PASSWORD, Live, new_person

QUICK = 15.0  # seconds; the hang was 30 s per retry


def alerts(live: Live, reason: str) -> int:
    return sum(1 for e in live.entries() if e.get("event_id") == "110113" and e.get("reason") == reason)


def test_refresh_replay_lockout_and_refusals_answer_at_once_and_are_alerted(live: Live) -> None:
    sysadmin = live.people["system_admin"]
    victim = new_person(live.url, sysadmin, "lockme", "researcher")
    with httpx.Client(base_url=live.url, timeout=QUICK) as c:
        r = c.post("/api/auth/login", json={"username": "lockme", "password": PASSWORD})
        first = r.json()["refresh_token"]
        assert c.post("/api/auth/refresh", json={"refresh_token": first}).status_code == 200
        before = alerts(live, "refresh token replayed: session revoked")
        assert c.post("/api/auth/refresh", json={"refresh_token": first}).status_code == 401
        assert alerts(live, "refresh token replayed: session revoked") == before + 1

        before = alerts(live, "account locked after repeated failed logins")
        for _ in range(5):
            r = c.post("/api/auth/login", json={"username": "lockme", "password": "wrong " + PASSWORD})
            assert r.status_code in (401, 429)
        assert alerts(live, "account locked after repeated failed logins") == before + 1
        r = c.post("/api/auth/login", json={"username": "lockme", "password": PASSWORD})
        assert r.status_code in (401, 429), "a locked account signed in"

        before = alerts(live, "administrator roles cannot be given or changed")
        r = c.post(f"/api/accounts/{victim.account_id}/role", json={"role": "security_auditor"},
                   headers={"Authorization": f"Bearer {sysadmin.token}"})
        assert r.status_code == 403
        assert alerts(live, "administrator roles cannot be given or changed") == before + 1

        sec = {"Authorization": f"Bearer {live.people['security_admin'].token}"}
        r = c.post("/api/approvals", json={"operation": "export_identified", "target": live.patients[1].studies[0]},
                   headers=sec)
        assert r.status_code == 201
        before = alerts(live, "requester tried to approve their own request")
        r = c.post(f"/api/approvals/{r.json()['id']}/approve", headers=sec)
        assert r.status_code == 403
        assert alerts(live, "requester tried to approve their own request") == before + 1
