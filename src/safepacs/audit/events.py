"""One audit event, modelled on DICOM PS3.15 A.5 / IHE ATNA audit messages.

Every layer (API, DIMSE, CLI, access control, retention) describes what happened with an
:class:`AuditEvent` and hands it to an :class:`AuditSink`.  An event never holds a value of
the original identity: patients appear by pseudonym, studies by their de-identified UID.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Protocol

# EventID codes (DCM, PS3.16 CID 400) used by safepacs
APPLICATION_ACTIVITY = "110100"
AUDIT_LOG_USED = "110101"
BEGIN_TRANSFERRING = "110102"
INSTANCES_ACCESSED = "110103"
INSTANCES_TRANSFERRED = "110104"
STUDY_DELETED = "110105"
EXPORT = "110106"
IMPORT = "110107"
NETWORK_ENTRY = "110108"
ORDER_RECORD = "110109"
PATIENT_RECORD = "110110"
PROCEDURE_RECORD = "110111"
QUERY = "110112"
SECURITY_ALERT = "110113"
USER_AUTHENTICATION = "110114"

EVENT_NAMES = {
    APPLICATION_ACTIVITY: "Application Activity",
    AUDIT_LOG_USED: "Audit Log Used",
    BEGIN_TRANSFERRING: "Begin Transferring DICOM Instances",
    INSTANCES_ACCESSED: "DICOM Instances Accessed",
    INSTANCES_TRANSFERRED: "DICOM Instances Transferred",
    STUDY_DELETED: "DICOM Study Deleted",
    EXPORT: "Export",
    IMPORT: "Import",
    NETWORK_ENTRY: "Network Entry",
    ORDER_RECORD: "Order Record",
    PATIENT_RECORD: "Patient Record",
    PROCEDURE_RECORD: "Procedure Record",
    QUERY: "Query",
    SECURITY_ALERT: "Security Alert",
    USER_AUTHENTICATION: "User Authentication",
}

# EventActionCode
CREATE, READ, UPDATE, DELETE, EXECUTE = "C", "R", "U", "D", "E"
# EventOutcomeIndicator
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = 0, 4, 8, 12


@dataclass(frozen=True)
class AuditEvent:
    """What happened, who did it, from where, to what.  Field values are pseudonymous.

    ``outcome`` 0 is success; a refusal is 4 (minor failure: the request was wrong) with
    ``reason`` saying why in words that hold no identifying value.
    """

    event_id: str  # DCM code, e.g. INSTANCES_ACCESSED
    action: str  # C, R, U, D or E
    outcome: int = SUCCESS
    user: str = ""  # account name (or "anonymous", or an AE title for DIMSE callers)
    role: str = ""  # the role the user acted in
    address: str = ""  # network address of the caller
    route: str = ""  # e.g. "GET /dicomweb/studies/{uid}", "C-FIND", "cli:import"
    study_uid: str = ""  # de-identified StudyInstanceUID, never the original
    patient: str = ""  # patient pseudonym, never the name or ID
    level: str = ""  # access level served: identified, pseudonymised, anonymised
    purpose: str = ""  # treatment, research:<project>, break-glass, ...
    reason: str = ""  # why refused, or a short note
    request_id: str = ""
    detail: dict[str, str | int | bool] = field(default_factory=dict)
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="microseconds"))

    @property
    def allowed(self) -> bool:
        return self.outcome == SUCCESS

    def to_dict(self) -> dict:
        # a shallow copy: field values are str/int and detail holds only scalars, so this
        # equals dataclasses.asdict at a fraction of its cost (it is on every request's path)
        d = {name: getattr(self, name) for name in _FIELD_NAMES}
        d["detail"] = dict(self.detail)
        return d

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces, UTF-8; the bytes hashed into the log."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> AuditEvent:
        return cls(**data)


_FIELD_NAMES = tuple(f.name for f in fields(AuditEvent))


class AuditSink(Protocol):
    """Where events go: the tamper-evident log, a structured log, a test's list."""

    def record(self, event: AuditEvent) -> None: ...


class LogSink:
    """Events as JSON lines on the ``safepacs.audit`` logger (no PHI by construction)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("safepacs.audit")

    def record(self, event: AuditEvent) -> None:
        self._log.info("%s", event.to_json())


class MemorySink:
    """Events kept in a list (tests, and the CLI before the log is open)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self._lock = threading.Lock()

    def record(self, event: AuditEvent) -> None:
        with self._lock:
            self.events.append(event)
