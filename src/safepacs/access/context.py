"""What every part of the access core shares: database, policy, keys, audit sink, clock."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from safepacs.access.keyfile import AccessKeys
from safepacs.access.policy import Policy
from safepacs.access.principal import Principal
from safepacs.audit.events import AuditEvent, AuditSink

Clock = Callable[[], datetime]
#: called after access was narrowed (grant revoked, project or care ended) with the scope as
#: keywords: ``grant=id``, ``project=code``, ``account=id`` (e.g. to drop cached renders)
Listener = Callable[..., object]

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """Naive UTC, as the index stores times."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class Context:
    engine: Engine
    policy: Policy
    keys: AccessKeys
    audit: AuditSink
    clock: Clock = utc_now
    listeners: list[Listener] = field(default_factory=list)

    def notify(self, **scope: int | str) -> None:
        """Tell every listener that access in ``scope`` ended.  The change is committed
        already and decisions read the database, so a failing listener is logged, not raised."""
        for listener in list(self.listeners):
            try:
                listener(**scope)
            except Exception as exc:  # noqa: BLE001 - one listener must not stop the others
                log.error("access listener failed with %s", type(exc).__name__)

    def now(self) -> datetime:
        now = self.clock()
        return now.replace(tzinfo=None) if now.tzinfo is None else now.astimezone(UTC).replace(tzinfo=None)

    def emit(self, event_id: str, action: str, *, outcome: int = 0,
             who: Principal | None = None, user: str = "", role: str = "", address: str = "",
             route: str = "", detail: dict | None = None, **fields: str) -> None:
        """Record one event; ``who`` fills user/role/address.  Callers pass pseudonyms and
        de-identified UIDs only."""
        if who is not None:
            user, role, address = user or who.username, role or who.role, address or who.address
            detail = {"session": who.session_id, "via": who.via, **(detail or {})}
        self.audit.record(AuditEvent(
            event_id=event_id, action=action, outcome=outcome, user=user, role=role,
            address=address, route=route, detail=detail or {},
            time=self.now().replace(tzinfo=UTC).isoformat(timespec="microseconds"), **fields,
        ))
