"""Every route of the served OpenAPI schema, called with and without credentials, leaves one
event in the tamper-evident trail, found by the request ID the response carries; every
DIMSE service does too.  Events name routes with ``{uid}`` placeholders, never a UID of the
sender's original study."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import httpx
import pytest
from sqlalchemy import select

from safepacs.audit.models import AuditEntry
from tests.people import admin

needs_dcmtk = pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK is not installed")
_FILL = {"study": "2.25.1", "series": "2.25.2", "sop": "2.25.3", "frame": "1", "frame_list": "1",
         "tag": "7FE00010"}


def _entries(archive) -> list[dict]:
    archive.audit.flush()
    with archive.access.ctx.engine.connect() as conn:
        return [json.loads(bytes(e)) for e in conn.scalars(select(AuditEntry.entry).order_by(AuditEntry.idx))]


def _path(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: _FILL.get(m.group(1), "1"), template)


def test_every_route_in_the_schema_leaves_an_event_found_by_its_request_id(served):
    schema = httpx.get(served.url + "/openapi.json", timeout=30).json()
    calls = [(method.upper(), template) for template, item in schema["paths"].items() for method in item
             if method in ("get", "post", "put", "delete", "patch")]
    assert len(calls) > 40 and any(t.startswith("/dicomweb/") for _, t in calls)
    assert any(t.startswith("/api/audit") for _, t in calls) and any(t.startswith("/api/me") for _, t in calls)
    seen: dict[str, tuple[str, str, int]] = {}
    for token in (served.token, None, "forged"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=served.url, headers=headers, timeout=60, follow_redirects=False) as c:
            for method, template in calls:
                r = c.request(method, _path(template), json={} if method == "POST" else None)
                assert r.status_code < 500, (method, template, r.status_code)
                seen[r.headers["x-request-id"]] = (method, template, r.status_code)
    events = {e["request_id"]: e for e in _entries(served.archive) if e.get("request_id")}
    for request_id, (method, template, status) in seen.items():
        event = events.get(request_id)
        assert event is not None, f"no audit event for {method} {template}"
        assert event["route"] == f"{method} " + re.sub(r"\d+(?:\.\d+)+", "{uid}", _path(template))
        assert event["detail"]["status"] == status
        assert (event["outcome"] == 0) == (status < 400)
        if status == 401:
            assert event["user"] == "anonymous"


def test_a_stow_url_naming_the_original_study_is_audited_without_that_uid(served):
    original = "1.2.826.0.1.3680043.99.12345.678"
    r = httpx.post(f"{served.url}/dicomweb/studies/{original}", content=b"--x--",
                   headers={"Authorization": f"Bearer {served.token}",
                            "Content-Type": 'multipart/related; type="application/dicom"; boundary=x'}, timeout=30)
    assert r.status_code in (400, 409)
    raw = json.dumps(_entries(served.archive))
    assert original not in raw


def test_auditor_reads_the_trail_and_administrators_actions_are_in_it(served):
    sec = admin(served.archive)
    auditor = admin(served.archive, "security_auditor")
    assert sec.role == "security_admin" and auditor.role == "security_auditor"
    events = _entries(served.archive)
    assert any(e["event_id"] == "110113" and e["route"] == "cli:token create" for e in events)


@needs_dcmtk
def test_every_dimse_service_leaves_an_event(tmp_path):
    from safepacs.archive import Archive
    from safepacs.dimse.scp import start
    from tests.archive.objects import ct_bytes
    from tests.server_harness import free_port

    archive, _ = Archive.create(tmp_path / "a")
    archive.create_token("dimse-reader")
    port, dest = free_port(), free_port()
    callers = [{"ae_title": ae, "host": "127.0.0.1", "account": "dimse-reader"} for ae in ("FINDSCU", "GETSCU", "MOVESCU")]
    server = start(archive, host="127.0.0.1", port=port, ae_title="SAFEPACS",
                   allowed_callers=[*callers, {"ae_title": "*", "host": "127.0.0.1"}],
                   move_destinations={"DEST": {"host": "127.0.0.1", "port": dest, "callers": ["MOVESCU"]}})
    (tmp_path / "ct.dcm").write_bytes(ct_bytes("1.2.3.4.5"))
    try:
        def run(*args: str) -> None:
            subprocess.run(list(args), capture_output=True, timeout=60)
        run("echoscu", "-aec", "SAFEPACS", "127.0.0.1", str(port))
        run("storescu", "-aec", "SAFEPACS", "127.0.0.1", str(port), str(tmp_path / "ct.dcm"))
        run("findscu", "-S", "-aec", "SAFEPACS", "127.0.0.1", str(port), "-k", "QueryRetrieveLevel=STUDY",
            "-k", "StudyInstanceUID")
        run("getscu", "-S", "-aec", "SAFEPACS", "-od", str(tmp_path), "127.0.0.1", str(port),
            "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=2.25.1")
        run("movescu", "-S", "-aec", "SAFEPACS", "-aem", "DEST", "127.0.0.1", str(port),
            "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=2.25.1")
        run("findscu", "-S", "-aet", "NOBODY", "-aec", "SAFEPACS", "127.0.0.1", str(port),
            "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID")
    finally:
        server.shutdown()
    events = _entries(archive)
    archive.close()
    routes = {(e["route"], e["outcome"]) for e in events}
    for service in ("C-ECHO", "C-STORE", "C-FIND", "C-GET", "C-MOVE"):
        assert (service, 0) in routes, service
    assert ("C-FIND", 4) in routes  # the caller without an account, refused and recorded
    assert "1.2.3.4.5" not in json.dumps(events)  # the original SOP Instance UID


def test_a_request_is_in_the_trail_before_its_answer_is_complete():
    """The event is handed to the audit sink before the last body message goes out, so a
    client that has read its answer can find it (it once raced the client on a busy CI)."""
    import asyncio

    from safepacs.api.auditing import AuditRequests

    events: list = []
    sent: list[tuple[str, bool, int]] = []

    class Sink:
        def record(self, event) -> None:  # type: ignore[no-untyped-def]
            events.append(event)

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        await send({"type": "http.response.body", "body": b"}"})

    async def send(message: dict) -> None:
        sent.append((message["type"], message.get("more_body", False), len(events)))

    scope = {"type": "http", "method": "GET", "path": "/dicomweb/studies/x", "headers": [],
             "query_string": b"", "client": ("127.0.0.1", 1)}
    asyncio.run(AuditRequests(app, Sink())(scope, None, send))
    assert sent == [("http.response.start", False, 0), ("http.response.body", True, 0),
                    ("http.response.body", False, 1)]
    assert len(events) == 1 and events[0].request_id == scope["state"]["request_id"]
