"""Anomaly rules over audit events, as data (``data/anomaly_rules.json``).

One :class:`AnomalyEngine` holds the little state the rate rules need (per-user sliding
windows) and turns each event into zero or more :class:`Alert` s.  It runs live, wrapped
around a sink (:class:`AnomalySink`), or as a batch over the stored trail (:func:`scan`).
Alerts are stored for the security administrator and auditor and recorded as
SECURITY_ALERT events; their summaries name the rule and counts, never a value from a file.
Family names and addresses reach the rules only as opaque hashed tokens, compared for
equality.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from safepacs.audit import events as ev
from safepacs.audit.events import AuditEvent, AuditSink
from safepacs.audit.models import AuditAlert
from safepacs.errors import SafepacsError

RULES = ("no_basis", "break_glass", "bulk_access", "off_hours", "vip", "same_family_or_address",
         "self_access", "after_end", "refusal_burst")
ALERT_STATUSES = ("open", "acknowledged", "closed")
_ROUTE = "anomaly:"


class RulesError(SafepacsError):
    """The anomaly rules file is malformed."""


@dataclass(frozen=True)
class AnomalyRules:
    raw: dict[str, Any]

    @classmethod
    def load(cls, path: Path | None = None) -> AnomalyRules:
        try:
            text = (Path(path).read_text(encoding="utf-8") if path
                    else (resources.files("safepacs.audit") / "data" / "anomaly_rules.json").read_text(encoding="utf-8"))
            raw = json.loads(text)
        except (OSError, ValueError) as exc:
            raise RulesError(f"anomaly rules unreadable ({exc.__class__.__name__})") from None
        return cls.parse(raw)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> AnomalyRules:
        if not isinstance(raw, dict) or not isinstance(raw.get("rules"), dict):
            raise RulesError("anomaly rules must be an object with a 'rules' object")
        unknown = set(raw["rules"]) - set(RULES)
        if unknown:
            raise RulesError(f"unknown anomaly rules: {sorted(unknown)}")
        for name, rule in raw["rules"].items():
            if not isinstance(rule, dict) or rule.get("severity") not in ("low", "medium", "high"):
                raise RulesError(f"rule {name}: needs a severity of low, medium or high")
        return cls(raw)

    def rule(self, name: str) -> dict[str, Any] | None:
        r = self.raw["rules"].get(name)
        return r if r and r.get("enabled", True) else None

    def with_changes(self, **rules: dict[str, Any]) -> AnomalyRules:
        """A copy with some rules' settings changed (for tests and site tuning)."""
        raw = json.loads(json.dumps(self.raw))
        for name, change in rules.items():
            raw["rules"].setdefault(name, {}).update(change)
        return AnomalyRules.parse(raw)


@dataclass
class Alert:
    rule: str
    severity: str
    user: str
    patient: str
    summary: str
    events: list[AuditEvent] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)  # log indices of the events, when known

    def to_event(self) -> AuditEvent:
        last = self.events[-1] if self.events else None
        return AuditEvent(
            ev.SECURITY_ALERT, ev.EXECUTE, outcome=ev.SUCCESS, user=self.user,
            role=last.role if last else "", route=_ROUTE + self.rule,
            study_uid=last.study_uid if last else "", patient=self.patient,
            reason=self.summary, detail={"rule": self.rule, "severity": self.severity, "events": len(self.events)},
        )


def _time(e: AuditEvent) -> datetime:
    try:
        t = datetime.fromisoformat(e.time)
    except ValueError:
        return datetime.now(UTC)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _hashes_equal(a: object, b: object) -> bool:
    return isinstance(a, str) and isinstance(b, str) and len(a) >= 16 and a == b


class AnomalyEngine:
    """Stateful rule evaluation; feed events in time order."""

    def __init__(self, rules: AnomalyRules | None = None, *, vip: Iterable[str] = ()) -> None:
        self.rules = rules or AnomalyRules.load()
        self.vip = set(vip)
        raw = self.rules.raw
        self._access = set(raw.get("access_events", [ev.INSTANCES_ACCESSED]))
        self._offset = timedelta(minutes=int(raw.get("site_utc_offset_minutes", 0)))
        self._dedupe = timedelta(seconds=int(raw.get("dedupe_seconds", 3600)))
        self._recent: dict[str, deque[tuple[datetime, str, int | None, AuditEvent]]] = defaultdict(deque)
        self._recent_counts: dict[str, Counter[str]] = defaultdict(Counter)
        self._refusals: dict[str, deque[tuple[datetime, int | None, AuditEvent]]] = defaultdict(deque)
        self._last_alert: dict[tuple[str, str, str], datetime] = {}
        self._hours: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def _alert(self, out: list[Alert], name: str, key: str, when: datetime, e: AuditEvent, summary: str,
               events: list[AuditEvent], indices: list[int | None]) -> None:
        k = (name, e.user, key)
        rule = self.rules.rule(name) or {}
        last = self._last_alert.get(k)
        window = timedelta(seconds=rule["dedupe_seconds"]) if "dedupe_seconds" in rule else self._dedupe
        if last is not None and when - last < window:
            return
        self._last_alert[k] = when
        out.append(Alert(name, rule.get("severity", "medium"), e.user, e.patient, summary, events,
                         [i for i in indices if i is not None]))

    def check(self, e: AuditEvent, index: int | None = None) -> list[Alert]:
        if e.route.startswith(_ROUTE):
            return []  # our own alerts
        out: list[Alert] = []
        when = _time(e)
        d = e.detail
        is_access = e.event_id in self._access and bool(e.study_uid or e.patient)
        subject = e.patient or e.study_uid
        one = ([e], [index])
        if not e.allowed and e.user:
            r = self.rules.rule("refusal_burst")
            if r:
                q = self._refusals[e.user]
                q.append((when, index, e))
                while q and when - q[0][0] > timedelta(seconds=r["window_seconds"]):
                    q.popleft()
                if len(q) >= r["max_refusals"]:
                    self._alert(out, "refusal_burst", "", when, e, f"{len(q)} refusals within {r['window_seconds']} s",
                                [x[2] for x in q], [x[1] for x in q])
        if not (is_access and e.allowed):
            return out
        basis = d.get("basis")
        if (r := self.rules.rule("no_basis")) and basis is not None and basis not in r["allowed_bases"]:
            self._alert(out, "no_basis", subject, when, e, "access without a care relationship, project or grant", *one)
        if self.rules.rule("break_glass") and (basis == "break_glass" or e.purpose in ("emergency", "break-glass")):
            self._alert(out, "break_glass", subject, when, e, "access under break-glass", *one)
        if (r := self.rules.rule("vip")) and (d.get("vip") is True or (e.patient and e.patient in self.vip)):
            self._alert(out, "vip", subject, when, e, "access to a VIP-flagged patient", *one)
        if self.rules.rule("same_family_or_address") and (
            _hashes_equal(d.get("reader_family"), d.get("patient_family"))
            or _hashes_equal(d.get("reader_address"), d.get("patient_address"))
        ):
            self._alert(out, "same_family_or_address", subject, when, e,
                        "reader and patient share a family name or address", *one)
        if (r := self.rules.rule("self_access")) and e.role in r["roles"] and (
            d.get("self") is True or (e.patient and d.get("reader_patient") == e.patient)
        ):
            self._alert(out, "self_access", subject, when, e, "own record opened through a clinical role", *one)
        if self.rules.rule("after_end"):
            for key in ("care_ends", "grant_ends"):
                end = d.get(key)
                if isinstance(end, str):
                    try:
                        t_end = datetime.fromisoformat(end)
                    except ValueError:
                        continue
                    t_end = t_end if t_end.tzinfo else t_end.replace(tzinfo=UTC)
                    if when > t_end:
                        self._alert(out, "after_end", subject, when, e,
                                    "access after discharge or the end of a grant", *one)
                        break
        if (r := self.rules.rule("off_hours")) and e.role in r["roles"]:
            local = when.astimezone(UTC) + self._offset
            off = not r["start_hour"] <= local.hour < r["end_hour"] or bool(r.get("weekends") and local.weekday() >= 5)
            seen = self._hours[e.user]  # [accesses, of which off-hours]: night shifts are usual for some
            if off and seen[1] <= seen[0] * r.get("max_usual_share", 1.0):
                self._alert(out, "off_hours", local.strftime("%Y-%m-%d"), when, e,
                            "access outside working hours, unusual for this reader", *one)
            seen[0] += 1
            seen[1] += off
        if (r := self.rules.rule("bulk_access")) and e.user:
            q = self._recent[e.user]
            seen = self._recent_counts[e.user]  # studies in the window, counted as they come and go
            key = e.study_uid or e.patient
            q.append((when, key, index, e))
            seen[key] += 1
            while q and when - q[0][0] > timedelta(seconds=r["window_seconds"]):
                gone = q.popleft()[1]
                seen[gone] -= 1
                if not seen[gone]:
                    del seen[gone]
            if len(seen) > r["max_studies"]:
                self._alert(out, "bulk_access", "", when, e,
                            f"{len(seen)} studies within {r['window_seconds']} s",
                            [x[3] for x in q], [x[2] for x in q])
        return out


class AlertStore:
    """The alerts table: what the security administrator and auditor work through."""

    def __init__(self, engine: Engine, clock=lambda: datetime.now(UTC).replace(tzinfo=None)) -> None:  # type: ignore[no-untyped-def]
        self._engine = engine
        self._now = clock

    def save(self, alert: Alert) -> int:
        events = [{"index": i, **x.to_dict()} for i, x in zip(alert.indices, alert.events, strict=False)] \
            if len(alert.indices) == len(alert.events) else [x.to_dict() for x in alert.events]
        with Session(self._engine) as s, s.begin():
            row = AuditAlert(rule=alert.rule, severity=alert.severity, user=alert.user[:128], patient=alert.patient[:64],
                             summary=alert.summary[:512], events=json.dumps(events[-200:]), status="open",
                             created_at=self._now())
            s.add(row)
            s.flush()
            return row.pk

    def list(self, *, status: str | None = None, rule: str | None = None, limit: int = 500) -> list[dict]:
        with Session(self._engine) as s:
            q = select(AuditAlert).order_by(AuditAlert.pk.desc()).limit(limit)
            if status:
                q = q.where(AuditAlert.status == status)
            if rule:
                q = q.where(AuditAlert.rule == rule)
            return [{"id": r.pk, "rule": r.rule, "severity": r.severity, "user": r.user, "patient": r.patient,
                     "summary": r.summary, "events": json.loads(r.events), "status": r.status,
                     "created_at": r.created_at.isoformat()} for r in s.scalars(q)]

    def set_status(self, alert_id: int, status: str) -> None:
        if status not in ALERT_STATUSES:
            raise RulesError(f"status must be one of {', '.join(ALERT_STATUSES)}")
        with Session(self._engine) as s, s.begin():
            row = s.get(AuditAlert, alert_id)
            if row is None:
                raise RulesError("no such alert")
            row.status = status


class AnomalySink:
    """Wraps a sink: records each event, then checks it; alerts are stored and recorded."""

    def __init__(self, inner: AuditSink, engine: AnomalyEngine, store: AlertStore | None = None) -> None:
        self.inner = inner
        self.engine = engine
        self.store = store
        self.alerts: int = 0

    def record(self, event: AuditEvent) -> None:
        self.inner.record(event)
        for alert in self.engine.check(event):
            self.alerts += 1
            if self.store is not None:
                self.store.save(alert)
            self.inner.record(alert.to_event())


def scan(entries: Iterable[tuple[int, bytes]], engine: AnomalyEngine, *, store: AlertStore | None = None,
         sink: AuditSink | None = None) -> list[Alert]:
    """The batch job: run the rules over stored entries (index, canonical JSON) in order."""
    found = []
    for idx, data in entries:
        try:
            e = AuditEvent.from_dict(json.loads(data))
        except (ValueError, TypeError):
            continue  # `audit verify` reports damaged entries; the rules skip them
        for alert in engine.check(e, idx):
            found.append(alert)
            if store is not None:
                store.save(alert)
            if sink is not None:
                sink.record(alert.to_event())
    return found
