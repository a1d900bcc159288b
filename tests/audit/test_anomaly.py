"""Each anomaly rule fires on the misuse it names and stays quiet on ordinary work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from safepacs.audit import events as ev
from safepacs.audit.anomaly import (
    AlertStore,
    AnomalyEngine,
    AnomalyRules,
    AnomalySink,
    RulesError,
    scan,
)
from safepacs.audit.events import MemorySink
from safepacs.audit.log import AuditLog
from safepacs.audit.verify import db_entries
from tests.audit.conftest import make_event

MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
H1, H2 = "a" * 32, "b" * 32  # opaque hashed tokens


def at(t: datetime, i: int = 0, **kw):
    kw.setdefault("detail", {"basis": "care"})
    return make_event(i, time=t.isoformat(), **kw)


def rules_fired(engine: AnomalyEngine, *events) -> list[str]:
    return [a.rule for e in events for a in engine.check(e)]


def test_ordinary_daytime_care_access_raises_nothing():
    engine = AnomalyEngine()
    events = [at(MONDAY_10 + timedelta(minutes=i), i, user="dr.a", study=f"2.25.{i}", patient=f"P{i}") for i in range(40)]
    assert rules_fired(engine, *events) == []


@pytest.mark.parametrize(("detail", "kw", "rule"), [
    ({"basis": "none"}, {}, "no_basis"),
    ({"basis": "break_glass"}, {"purpose": "emergency"}, "break_glass"),
    ({"basis": "care", "vip": True}, {}, "vip"),
    ({"basis": "care", "reader_family": H1, "patient_family": H1}, {}, "same_family_or_address"),
    ({"basis": "care", "reader_address": H2, "patient_address": H2}, {}, "same_family_or_address"),
    ({"basis": "care", "reader_patient": "PSN0003"}, {"patient": "PSN0003"}, "self_access"),
    ({"basis": "care", "care_ends": (MONDAY_10 - timedelta(days=2)).isoformat()}, {}, "after_end"),
    ({"basis": "grant", "grant_ends": (MONDAY_10 - timedelta(minutes=1)).isoformat()}, {}, "after_end"),
])
def test_single_event_rules(detail, kw, rule):
    assert rules_fired(AnomalyEngine(), at(MONDAY_10, detail=detail, **kw)) == [rule]


def test_near_misses_do_not_fire():
    engine = AnomalyEngine()
    quiet = [
        at(MONDAY_10, detail={"basis": "care", "reader_family": H1, "patient_family": H2}),
        at(MONDAY_10, detail={"basis": "care", "reader_family": "", "patient_family": ""}),
        at(MONDAY_10, detail={"basis": "care", "care_ends": (MONDAY_10 + timedelta(days=1)).isoformat()}),
        at(MONDAY_10, detail={"basis": "care", "reader_patient": "PSN0003"}, patient="PSN0004"),
        at(MONDAY_10, detail={"basis": "none"}, outcome=ev.MINOR_FAILURE),  # refused: nothing was seen
        at(MONDAY_10, detail={"basis": "patient", "reader_patient": "PSN0003"}, patient="PSN0003", role="patient"),
    ]
    assert rules_fired(engine, *quiet) == []


def test_vip_list_alerts_once_per_reader():
    engine = AnomalyEngine(vip={"PSN0001"})
    assert rules_fired(engine, at(MONDAY_10, patient="PSN0001")) == ["vip"]
    assert rules_fired(engine, at(MONDAY_10 + timedelta(days=1), patient="PSN0001")) == []
    assert rules_fired(engine, at(MONDAY_10, patient="PSN0001", user="other")) == ["vip"]


def test_off_hours_flags_day_staff_at_night_but_learns_night_shifts():
    engine = AnomalyEngine()
    day = [at(MONDAY_10 + timedelta(days=d, minutes=m), user="day") for d in range(3) for m in range(10)]
    assert rules_fired(engine, *day) == []
    assert rules_fired(engine, at(MONDAY_10.replace(hour=3) + timedelta(days=4), user="day")) == ["off_hours"]
    nights = [at(MONDAY_10.replace(hour=23) + timedelta(days=d, minutes=m), user="night") for d in range(5) for m in range(8)]
    assert rules_fired(engine, *nights) == ["off_hours"]  # the first night only
    weekend = AnomalyEngine(AnomalyRules.load().with_changes(off_hours={"weekends": True}))
    assert rules_fired(weekend, at(MONDAY_10 + timedelta(days=5), user="saturday")) == ["off_hours"]
    shifted = AnomalyEngine(AnomalyRules.parse({**AnomalyRules.load().raw, "site_utc_offset_minutes": 480}))
    assert rules_fired(shifted, at(MONDAY_10.replace(hour=3))) == []  # 11:00 at UTC+8


def test_bulk_access_fires_once_past_the_threshold():
    engine = AnomalyEngine(AnomalyRules.load().with_changes(bulk_access={"max_studies": 10}))
    fired = rules_fired(engine, *[at(MONDAY_10 + timedelta(seconds=i), i, user="bulk", study=f"2.25.{i}") for i in range(30)])
    assert fired == ["bulk_access"]
    engine = AnomalyEngine(AnomalyRules.load().with_changes(bulk_access={"max_studies": 10}))
    same = [at(MONDAY_10 + timedelta(seconds=i), i, user="busy", study="2.25.1") for i in range(30)]
    assert rules_fired(engine, *same) == []  # one study many times is not bulk


def test_refusal_burst():
    engine = AnomalyEngine()
    probes = [at(MONDAY_10 + timedelta(seconds=5 * i), i, user="probe", outcome=ev.MINOR_FAILURE, study=f"2.25.{i}") for i in range(12)]
    assert rules_fired(engine, *probes) == ["refusal_burst"]
    slow = [at(MONDAY_10 + timedelta(minutes=10 * i), i, user="slow", outcome=ev.MINOR_FAILURE) for i in range(12)]
    assert rules_fired(AnomalyEngine(), *slow) == []


def test_sink_stores_alerts_and_records_them_in_the_log(engine, tmp_path):
    log = AuditLog(engine, tmp_path / "k", background=False)
    store = AlertStore(engine)
    sink = AnomalySink(log, AnomalyEngine(), store)
    sink.record(at(MONDAY_10, detail={"basis": "break_glass"}, purpose="emergency", patient="PSN0042"))
    sink.record(at(MONDAY_10, 1))
    log.close()
    alerts = store.list()
    assert [a["rule"] for a in alerts] == ["break_glass"]
    assert alerts[0]["events"][0]["patient"] == "PSN0042"
    kinds = [e["event_id"] for _, e in ((i, __import__("json").loads(d)) for i, d, *_ in db_entries(engine))]
    assert kinds == [ev.INSTANCES_ACCESSED, ev.SECURITY_ALERT, ev.INSTANCES_ACCESSED]
    store.set_status(alerts[0]["id"], "acknowledged")
    assert store.list(status="acknowledged")[0]["id"] == alerts[0]["id"]
    # the batch job over the stored trail finds the same, and ignores its own alert events
    found = scan(((e.idx, e.entry) for e in db_entries(engine)), AnomalyEngine(), sink=MemorySink())
    assert [(a.rule, a.indices) for a in found] == [("break_glass", [0])]


def test_bad_rules_are_refused():
    with pytest.raises(RulesError):
        AnomalyRules.parse({"rules": {"made_up": {"severity": "low"}}})
    with pytest.raises(RulesError):
        AnomalyRules.parse({"rules": {"vip": {"severity": "extreme"}}})
