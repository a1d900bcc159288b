"""The archive's audit pipeline, assembled from settings: every event is checked by the
anomaly rules, appended to the tamper-evident log (whose signed heads go to the witnesses)
and, when configured, exported to a TLS syslog collector.

    event -> anomaly rules -> log (+ alerts as events) -> witnesses: file, syslog
                           -> syslog export (DICOM audit XML, RFC 5424 over TLS)
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Engine

from safepacs.audit import events as ev
from safepacs.audit.anomaly import AlertStore, AnomalyEngine
from safepacs.audit.events import AuditEvent
from safepacs.audit.log import AuditLog
from safepacs.audit.witness import FileWitness, SyslogWitness, Witness

log = logging.getLogger("safepacs.audit")

#: the default witness file: beside the data, so ``audit verify`` finds it; point
#: ``audit_witness`` at another machine's mount so a deleted data dir cannot take it along
WITNESS_FILE = "audit-witness.jsonl"
_DURABLE = frozenset({ev.SECURITY_ALERT, ev.EXPORT, ev.STUDY_DELETED})


class Trail:
    """An AuditSink with the log's ``flush``/``close``/``public_key``."""

    def __init__(self, engine: Engine, data_dir: Path, *, witness: str = "",
                 syslog: dict | None = None, vip: list[str] | None = None, organisation: str = "") -> None:
        keys_dir = Path(data_dir) / "keys"
        witnesses: list[Witness] = [FileWitness(Path(witness) if witness else Path(data_dir) / WITNESS_FILE)]
        self.syslog = None
        if syslog:
            from safepacs.audit.syslog import SyslogSender

            ctx = ssl.create_default_context(cafile=syslog.get("ca") or None)
            self.syslog = SyslogSender(str(syslog["host"]), int(syslog["port"]),
                                       Path(syslog.get("spool") or Path(data_dir) / "audit-syslog.spool"),
                                       ssl_context=ctx, server_hostname=syslog.get("server_name"))
            witnesses.append(SyslogWitness(self.syslog))
        self.log = AuditLog(engine, keys_dir, witnesses=witnesses)
        self.public_key = self.log.public_key
        self.rules = AnomalyEngine(vip=vip or ())
        self.organisation = organisation  # shown to patients on each line of their access log
        self.alerts = AlertStore(engine)

    def record(self, event: AuditEvent, *, wait: bool | None = None) -> None:
        """Queue ``event`` (group commit); security alerts, exports and deletions are
        durable before this returns, whatever ``wait`` says, so a crash cannot lose them."""
        if wait is None:
            wait = event.event_id in _DURABLE
        if self.organisation and event.patient and "organisation" not in event.detail:
            event = replace(event, detail={**event.detail, "organisation": self.organisation})
        self.log.record(event, wait=wait)
        if self.syslog is not None:
            self.syslog.record(event)
        try:
            found = self.rules.check(event)
        except Exception as exc:  # noqa: BLE001 - a rule bug must not lose the event (recorded above)
            log.error("anomaly rules failed with %s", type(exc).__name__)
            return
        for alert in found:
            self.alerts.save(alert)
            self.log.record(alert.to_event(), wait=True)
            if self.syslog is not None:
                self.syslog.record(alert.to_event())

    def flush(self) -> None:
        self.log.flush()

    def close(self) -> None:
        try:
            self.log.close()
        finally:
            if self.syslog is not None:
                self.syslog.close()
