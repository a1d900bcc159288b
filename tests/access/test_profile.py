"""Reader profiles (keyed hashes only), the anomaly inputs ``decide`` writes into its
events, and the listeners told when access is narrowed."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from safepacs.access.errors import AccessError, Forbidden, NotFound
from safepacs.access.models import Profile
from safepacs.access.profile import PatientFamilies, ProfileHasher, family_of, normalise, pick
from safepacs.access.service import AccessControl
from safepacs.api.admin import admin_router
from safepacs.audit.events import INSTANCES_ACCESSED, SECURITY_ALERT
from tests.access.conftest import T0, ac, clock, engine, make_user, sink, studies  # noqa: F401
from tests.access.http import serving

FAMILY = "Zhang"


def _reads(memory):
    return [e for e in memory.events if e.event_id == INSTANCES_ACCESSED]


def test_normalise_folds_width_case_and_spaces():
    assert normalise("  ZHANG \t  Wei ") == "zhang wei"
    assert normalise("ＺＨＡＮＧ") == "zhang"  # full-width letters (NFKC)
    assert normalise("STRASSE") == normalise("straße")  # case folding, not lower()
    assert family_of("ZHANG^WEI=张^伟") == "ZHANG"
    assert family_of("=张^伟") == ""


def test_tokens_are_keyed_typed_and_opaque(ac, tmp_path):  # noqa: F811
    h = ac.profiles.hasher
    token = h.family("zhang")
    assert token == h.family(" ZHANG ") and len(token) == 64 and "zhang" not in token
    assert h.address("zhang") != token  # kinds are separated
    assert h.family("   ") is None and h.family(None) is None
    other = ProfileHasher(AccessControl(ac.ctx.engine, tmp_path / "other-keys").ctx.keys)
    assert other.family("zhang") != token  # another site's key: another token


def test_only_a_system_admin_sets_a_profile_and_only_hashes_are_kept(ac, make_user, sink, engine, tmp_path):  # noqa: F811
    sysadm, secadm = make_user("sys", "system_admin"), make_user("sec", "security_admin")
    doc = make_user("doc", "physician")
    ac.profiles.set(sysadm.principal, doc.id, family_name=FAMILY, address="1 Long Road", own_patient="PSEUDO-B")
    with Session(engine) as s:
        row = s.get(Profile, doc.id)
        assert row.family_hash == ac.profiles.hasher.family("zhang")
        assert row.address_hash == ac.profiles.hasher.address("1 long road")
        assert row.own_patient == "PSEUDO-B"
    db_bytes = (tmp_path / "index.sqlite").read_bytes()
    assert b"Zhang" not in db_bytes and b"Long Road" not in db_bytes
    assert "Zhang" not in repr(sink.events) and "Long Road" not in repr(sink.events)
    assert [e.reason for e in sink.events if e.event_id == SECURITY_ALERT][-1] == "reader profile set"
    with pytest.raises(Forbidden):
        ac.profiles.set(secadm.principal, doc.id, family_name=FAMILY)
    with pytest.raises(Forbidden):
        ac.profiles.set(doc.principal, doc.id, family_name=FAMILY)
    with pytest.raises(Forbidden):  # not even one's own
        ac.profiles.set(sysadm.principal, sysadm.id, family_name=FAMILY)
    with pytest.raises(NotFound):
        ac.profiles.set(sysadm.principal, 9999, family_name=FAMILY)
    with pytest.raises(AccessError, match="pseudonym"):
        ac.profiles.set(sysadm.principal, doc.id, own_patient="not a pseudonym!")
    ac.profiles.set(sysadm.principal, doc.id)  # clears it
    assert ac.profiles.get(doc.id).family is None and ac.profiles.get(doc.id).own_patient is None


def test_decide_writes_the_anomaly_inputs_of_an_allowed_read(ac, make_user, studies, sink, clock):  # noqa: F811
    sysadm, sec = make_user("sys", "system_admin"), make_user("sec", "security_admin")
    doc = make_user("doc", "physician")
    ends = T0 + timedelta(days=3)
    ac.grants.add_care(sec.principal, doc.id, "PSEUDO-A", ends_at=ends)
    ac.profiles.set(sysadm.principal, doc.id, family_name=FAMILY, own_patient="PSEUDO-A")
    other = ac.profiles.hasher.family("smith")
    asked: list[str] = []
    ac.enrich = lambda p: asked.append(p) or {"patient_family": (other, ac.profiles.hasher.family("ZHANG"))}
    ac.vip = frozenset({"PSEUDO-A"})
    assert ac.decide(doc.principal, studies["PSEUDO-A"][0]).allowed
    d = _reads(sink)[-1].detail
    assert asked == ["PSEUDO-A"]
    assert d["basis"] == "care" and d["vip"] is True and d["reader_patient"] == "PSEUDO-A"
    assert d["reader_family"] == d["patient_family"] == ac.profiles.hasher.family("zhang")
    assert "reader_address" not in d and "patient_address" not in d
    assert datetime.fromisoformat(d["care_ends"]) == ends.replace(tzinfo=UTC)
    # a refusal carries none of it (nothing was opened)
    assert not ac.decide(doc.principal, studies["PSEUDO-B"][0]).allowed
    refused = _reads(sink)[-1].detail
    assert not {"vip", "reader_family", "patient_family", "reader_patient", "care_ends"} & set(refused)
    assert asked == ["PSEUDO-A"]


def test_grant_reads_say_when_the_grant_ends_and_a_broken_enrich_is_survived(ac, make_user, studies, sink, caplog):  # noqa: F811
    sysadm = make_user("sys", "system_admin")
    sec, tp = make_user("sec", "security_admin"), make_user("tp", "third_party")
    ends = T0 + timedelta(days=2)
    g = ac.grants.create_grant(sec.principal, tp.id, [studies["PSEUDO-B"][0]], ends_at=ends)
    asked: list[str] = []

    def broken(pseudonym: str) -> dict:
        asked.append(pseudonym)
        raise RuntimeError("ZHANG")  # a message that must not reach the log

    ac.enrich = broken
    assert ac.decide(tp.principal, studies["PSEUDO-B"][0]).allowed
    assert asked == []  # no family name or address on file: nothing to compare, nothing asked
    ac.profiles.set(sysadm.principal, tp.id, family_name=FAMILY)
    with caplog.at_level(logging.ERROR):
        assert ac.decide(tp.principal, studies["PSEUDO-B"][0]).allowed
    d = _reads(sink)[-1].detail
    assert asked == ["PSEUDO-B"]
    assert d["grant"] == g.id and d["enrich"] == "failed" and "vip" not in d
    assert datetime.fromisoformat(d["grant_ends"]) == ends.replace(tzinfo=UTC)
    assert "ZHANG" not in caplog.text and "RuntimeError" in caplog.text


def test_pick_prefers_the_readers_token():
    assert pick("b", ("a", "b")) == "b"
    assert pick("c", ("a", "b")) == "a"
    assert pick(None, ()) is None


def test_patient_families_are_read_once_per_patient(engine, studies, ac):  # noqa: F811
    class Ident:
        def __init__(self, name: str) -> None:
            self.patient_name = name

    calls = []

    def identities():
        calls.append(1)
        with Session(engine) as s:
            from sqlalchemy import select

            from safepacs.index.models import Patient
            pk = s.scalar(select(Patient.pk).where(Patient.patient_id == "PSEUDO-A"))
        return {pk: [Ident("ZHANG^WEI=张^伟"), Ident("Zhang^W"), Ident("LI^NA")]}

    fam = PatientFamilies(ac.profiles.hasher, engine, identities)
    got = fam("PSEUDO-A")
    h = ac.profiles.hasher
    assert tuple(got["patient_family"]) == (h.family("zhang"), h.family("li"))
    assert fam("PSEUDO-A") == got and len(calls) == 1  # cached
    assert fam("PSEUDO-B") == {} and fam("NO-SUCH") == {}


def test_listeners_hear_of_revoked_grants_ended_projects_and_care(ac, make_user, studies, caplog):  # noqa: F811
    sec = make_user("sec", "security_admin")
    tp, res, doc = make_user("tp", "third_party"), make_user("res", "researcher"), make_user("doc", "physician")
    heard: list[dict] = []

    def failing(**_: object) -> None:
        raise RuntimeError("listener down")

    ac.ctx.listeners.extend([failing, lambda **scope: heard.append(scope)])
    g = ac.grants.create_grant(sec.principal, tp.id, [studies["PSEUDO-A"][0]])
    p = ac.grants.create_project(sec.principal, "P1", "synthetic", T0 + timedelta(days=9))
    ac.grants.add_member(sec.principal, p.id, res.id)
    c = ac.grants.add_care(sec.principal, doc.id, "PSEUDO-A")
    assert heard == []
    with caplog.at_level(logging.ERROR):
        ac.grants.revoke_grant(sec.principal, g.id)
        ac.grants.end_project(sec.principal, p.id)
        ac.grants.end_care(sec.principal, c.id)
    assert heard == [{"grant": g.id}, {"project": "P1"}, {"account": doc.id}]
    assert caplog.text.count("RuntimeError") == 3  # logged, and the others still heard
    assert not ac.decide(tp.principal, studies["PSEUDO-A"][0]).allowed  # the revocation stands


def test_profile_route_over_http(ac, make_user, clock):  # noqa: F811
    from tests.api.test_admin import bearer, login

    sysadm, doc = make_user("sys", "system_admin"), make_user("doc", "physician")
    app = FastAPI()
    app.include_router(admin_router(ac))
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as api:
        token = login(api, sysadm, clock)
        r = api.post(f"/api/accounts/{doc.id}/profile", headers=bearer(token),
                     json={"family_name": FAMILY, "address": "1 Long Road"})
        assert r.status_code == 200 and r.json() == {"family_name": True, "address": True, "own_patient": False,
                                              "department": None}
        assert FAMILY not in r.text
        r = api.post(f"/api/accounts/{doc.id}/profile", headers=bearer(token), json={"family_name": "x" * 600})
        assert r.status_code == 422  # refused by the schema (the full app answers 400, no values)
        doc_token = login(api, doc, clock)
        r = api.post(f"/api/accounts/{doc.id}/profile", headers=bearer(doc_token), json={"family_name": "X"})
        assert r.status_code == 403
    assert ac.profiles.get(doc.id).family == ac.profiles.hasher.family(FAMILY)
