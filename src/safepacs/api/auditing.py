"""One audit event for every HTTP request, whatever route answers it and however it ends.

Plain ASGI middleware, outermost, so requests the fast retrieve path answers, requests the
router refuses (401, 404, 405) and requests that fail (500) are all recorded.  Object-level
decisions (which study, which level, which basis) are recorded by the access layer as it
makes them; this event says who called which route from where and how it ended.

The route is recorded with every UID replaced by ``{uid}``: a STOW-RS URL names the sender's
original StudyInstanceUID.  For reads the study UID in the path is the stored, de-identified
one (or a project's re-keyed one), kept in the event's detail; the access decision's own
event names the stored study, so a patient's access log shows each access once.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from safepacs.audit import events as ev
from safepacs.audit.events import AuditEvent, AuditSink

_UID = re.compile(r"\d+(?:\.\d+)+")
_READ_STUDY = re.compile(r"^/dicomweb/studies/([0-9.]{1,64})(?:/|$)")


def event_kind(method: str, path: str) -> tuple[str, str]:
    """(EventID, EventActionCode) of a request, by what the route does."""
    if path.startswith("/api/auth/"):
        return ev.USER_AUTHENTICATION, ev.EXECUTE
    if path.startswith("/api/audit") or path.startswith("/api/alerts"):
        return ev.AUDIT_LOG_USED, ev.READ
    if path.startswith("/dicomweb/"):
        if method == "POST":
            return ev.IMPORT, ev.CREATE
        tail = path.rstrip("/").rsplit("/", 1)[-1]
        if tail in ("studies", "series", "instances"):
            return ev.QUERY, ev.EXECUTE
        return ev.INSTANCES_ACCESSED, ev.READ
    if path.startswith("/api/export"):
        return ev.EXPORT, ev.READ
    if method in ("GET", "HEAD"):
        return ev.APPLICATION_ACTIVITY, ev.READ
    return ev.APPLICATION_ACTIVITY, ev.UPDATE if method in ("PUT", "PATCH") else (
        ev.DELETE if method == "DELETE" else ev.CREATE)


def outcome_of(status: int) -> int:
    if status < 400:
        return ev.SUCCESS
    if status < 500:
        return ev.MINOR_FAILURE
    return ev.SERIOUS_FAILURE


class AuditRequests:
    """ASGI middleware: records an :class:`AuditEvent` per HTTP request into ``sink``.

    Whoever authenticated the caller leaves the principal in ``scope["state"]["principal"]``
    (FastAPI's ``request.state.principal``); a request without one is recorded as anonymous.
    """

    def __init__(self, app: Any, sink: AuditSink) -> None:
        self.app = app
        self.sink = sink

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        request_id = state.get("request_id") or secrets.token_hex(8)
        state["request_id"] = request_id
        status = [500]
        started = time.perf_counter()
        recorded = [False]
        answering = [False]  # the status line went out; the body may not all have

        def record() -> None:
            if not recorded[0]:
                recorded[0] = True
                self.sink.record(request_event(scope, status[0], request_id, time.perf_counter() - started,
                                               unfinished=answering[0]))

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                answering[0] = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("ascii"))]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Recorded before the last byte leaves: a client holding its answer finds the
                # request in the trail (after the event, a busy loop could answer first).
                answering[0] = False
                record()
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            record()


def request_event(scope: dict, status: int, request_id: str, seconds: float, *,
                  unfinished: bool = False) -> AuditEvent:
    """The request's event; ``unfinished``: the response started but its body did not end (a
    client that left, or a server that cut it: then ``state["cut"]`` says why, and the
    event is a failure whatever the status line said)."""
    method, path = scope["method"], scope["path"]
    state = scope.get("state") or {}
    who = state.get("principal")
    event_id, action = event_kind(method, path)
    m = _READ_STUDY.match(path) if method in ("GET", "HEAD") else None
    client = scope.get("client") or ("", 0)
    decision = state.get("decision")
    reason = str(state.get("refusal", "")) if status >= 400 else ""
    if scope.get("query_string") and b"access_token" in scope["query_string"].lower():
        reason = reason or "token in the URL"
    cut = unfinished and bool(state.get("cut"))
    if cut:
        reason = f"response cut: {state['cut']}"
    return AuditEvent(
        event_id=event_id,
        action=action,
        outcome=ev.SERIOUS_FAILURE if cut else outcome_of(status),
        user=getattr(who, "username", "") or "anonymous",
        role=getattr(who, "role", ""),
        address=str(client[0] or ""),
        route=f"{method} {_UID.sub('{uid}', path)}",
        patient=str(state.get("patient", "")),
        level=getattr(decision, "level", "") or "",
        purpose=getattr(decision, "purpose", "") or "",
        reason=reason,
        request_id=request_id,
        # the study as the URL names it (stored, or a project's own UID); the object-level
        # event of the access decision carries the stored study and the patient pseudonym
        detail={"status": status, "ms": round(seconds * 1000, 3),
                **({"url_study": m.group(1)} if m else {}), **({"unfinished": True} if unfinished else {})},
    )
