"""The archive's audit pipeline, assembled from settings: every event is checked by the
anomaly rules, appended to the tamper-evident log (whose signed heads go to the witnesses)
and, when configured, exported to a TLS syslog collector.

    event -> anomaly rules -> log (+ alerts as events) -> witnesses: file, syslog
                           -> syslog export (DICOM audit XML, RFC 5424 over TLS)
"""

from __future__ import annotations

import collections
import logging
import ssl
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from safepacs.audit import events as ev
from safepacs.audit.anomaly import AlertStore, AnomalyEngine
from safepacs.audit.courtesy import Courtesy
from safepacs.audit.events import AuditEvent
from safepacs.audit.log import AuditLog
from safepacs.audit.witness import FileWitness, SyslogWitness, Witness

if TYPE_CHECKING:
    from safepacs.store.service_keys import SecretSource

log = logging.getLogger("safepacs.audit")

#: the default witness file: beside the data, so ``audit verify`` finds it; point
#: ``audit_witness`` at another machine's mount so a deleted data dir cannot take it along
WITNESS_FILE = "audit-witness.jsonl"
_DURABLE = frozenset({ev.SECURITY_ALERT, ev.EXPORT, ev.STUDY_DELETED})
DURABLE_WAIT_S = 5.0
#: how often the anomaly rules look at new events (an alert is at most this late)
CHECK_INTERVAL_S = 0.05


class Trail:
    """An AuditSink with the log's ``flush``/``close``/``public_key``."""

    def __init__(self, engine: Engine, data_dir: Path, *, witness: str = "",
                 syslog: dict | None = None, vip: list[str] | None = None, organisation: str = "",
                 keys: SecretSource | None = None) -> None:
        # the signing key: the archive's wrapped secret, else a key file in keys/ (bare use)
        keys_dir: Path | SecretSource = keys if keys is not None else Path(data_dir) / "keys"
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
        # Events wait here for the rules; the checker drains them every CHECK_INTERVAL_S
        # instead of being woken per event: a wake-up per request handed the GIL to the
        # checker in the middle of each retrieve (about a tenth of a slice's latency).
        self._checks: collections.deque = collections.deque()
        self._kick = threading.Event()
        self._checker = threading.Thread(target=self._check_loop, name="audit-anomaly", daemon=True)
        self._checker.start()
        self.alerts = AlertStore(engine)

    def record(self, event: AuditEvent, *, wait: bool | None = None) -> None:
        """Queue ``event`` (group commit).  Security alerts, exports and deletions are waited
        for until durable, for at most ``DURABLE_WAIT_S``: a caller still inside its own
        write transaction (SQLite has one writer) would otherwise wait on itself; the event
        stays queued and is written as soon as that transaction ends.  Anomaly rules run on
        a worker thread, so an alert never blocks the request that raised it."""
        if wait is None:
            wait = event.event_id in _DURABLE
        if self.organisation and event.patient and "organisation" not in event.detail:
            event = replace(event, detail={**event.detail, "organisation": self.organisation})
        self.log.record(event)
        if self.syslog is not None:
            self.syslog.record(event)
        self._checks.append(event)
        if wait:
            flusher = threading.Thread(target=self._flush_quietly, name="audit-durable", daemon=True)
            flusher.start()
            flusher.join(DURABLE_WAIT_S)
            if flusher.is_alive():
                log.warning("a security event is queued, not yet durable (the caller holds the database)")

    def _flush_quietly(self) -> None:
        try:
            self.log.flush()
        except Exception as exc:  # noqa: BLE001 - the log fails closed on its own; say why here
            log.error("audit flush failed with %s", type(exc).__name__)

    def _check_loop(self) -> None:
        courtesy = Courtesy()  # pauses between events (see safepacs.audit.courtesy)
        while True:
            self._kick.wait(CHECK_INTERVAL_S)
            self._kick.clear()
            courtesy.start()
            while self._checks:
                courtesy.tick()
                event = self._checks.popleft()
                if event is None:
                    return
                if isinstance(event, _Marker):
                    event.done.set()
                    continue
                self._check(event)

    def _check(self, event: AuditEvent) -> None:
        try:
            found = self.rules.check(event)
            for alert in found:
                self.alerts.save(alert)
                self.log.record(alert.to_event())
                if self.syslog is not None:
                    self.syslog.record(alert.to_event())
        except Exception as exc:  # noqa: BLE001 - a rule bug must not stop the trail
            log.error("anomaly rules failed with %s", type(exc).__name__)

    def flush(self) -> None:
        """Everything recorded so far checked by the rules and written durably."""
        done = threading.Event()
        self._checks.append(_Marker(done))
        self._kick.set()
        done.wait(30)
        self.log.flush()

    def close(self) -> None:
        self._checks.append(None)
        self._kick.set()
        self._checker.join(30)
        try:
            self.log.close()
        finally:
            if self.syslog is not None:
                self.syslog.close()


class _Marker:
    """Put on the rules' queue by ``flush``: set when everything before it was checked."""

    def __init__(self, done: threading.Event) -> None:
        self.done = done
