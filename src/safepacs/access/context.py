"""What every part of the access core shares: database, policy, keys, audit sink, clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from safepacs.access.keyfile import AccessKeys
from safepacs.access.policy import Policy
from safepacs.access.principal import Principal
from safepacs.audit.events import AuditEvent, AuditSink

Clock = Callable[[], datetime]


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
