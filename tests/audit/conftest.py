"""Audit fixtures: a real SQLite index with the full schema, a log over it, synthetic events."""

from __future__ import annotations

import pytest

from safepacs.audit import events as ev
from safepacs.audit.events import AuditEvent
from safepacs.index import db


@pytest.fixture
def engine(tmp_path):
    e = db.make_engine(f"sqlite:///{tmp_path / 'index.sqlite'}")
    db.upgrade(e)
    yield e
    e.dispose()


def make_event(i: int, **kw) -> AuditEvent:
    """A plausible access event; every value is synthetic and pseudonymous.  Keyword
    arguments override the defaults (``patient=""`` gives an event without a patient)."""
    fields = {
        "event_id": ev.INSTANCES_ACCESSED,
        "action": ev.READ,
        "user": f"reader{i % 5}",
        "role": "physician",
        "address": f"10.0.0.{i % 250}",
        "route": "GET /dicomweb/studies/{uid}",
        "study_uid": f"2.25.{1000 + i % 7}",
        "patient": f"PSN{i % 7:04d}",
        "level": "identified",
        "purpose": "treatment",
        "request_id": f"r{i}",
    }
    if "study" in kw:
        kw["study_uid"] = kw.pop("study")
    fields.update(kw)
    return AuditEvent(**fields)
