"""One object the API and CLI hold for the read side of the trail: proofs, the patient's
access log, appeals and alerts.  Writing stays with :class:`~safepacs.audit.log.AuditLog`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from safepacs.audit.anomaly import AlertStore
from safepacs.audit.events import AuditSink, LogSink
from safepacs.audit.models import AuditEntry
from safepacs.audit.patient import AccessLine, Appeals, PatientLogPolicy, access_log
from safepacs.audit.proofs import TrailReader


@dataclass
class AuditService:
    engine: Engine
    audit: AuditSink = field(default_factory=LogSink)
    policy: PatientLogPolicy = field(default_factory=PatientLogPolicy)

    def __post_init__(self) -> None:
        self.reader = TrailReader(self.engine)
        self.appeals = Appeals(self.engine, audit=self.audit, reader=self.reader)
        self.alerts = AlertStore(self.engine)

    def access_log(self, pseudonym: str) -> list[AccessLine]:
        return access_log(self.engine, pseudonym, self.policy)

    def entries(self, start: int = 0, limit: int = 100) -> list[dict]:
        """A page of the trail for the auditor: index, leaf hash and the event."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(AuditEntry.idx, AuditEntry.entry, AuditEntry.leaf_hash)
                .where(AuditEntry.idx >= start).order_by(AuditEntry.idx).limit(max(1, min(limit, 1000)))
            ).all()
        return [{"index": i, "leaf_hash": bytes(h).hex(), "event": json.loads(bytes(e))} for i, e, h in rows]
