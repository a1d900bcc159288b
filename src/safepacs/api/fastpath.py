"""A shortcut for the hottest routes: WADO-RS retrieve of one instance, and of its first
frame rendered (PNG/JPEG at the default window and quality, marked to the reader).

Plain ASGI, registered as middleware: the same checks as the full route (bearer token, UIDs,
Accept, the instance in the study and series of the URL), without FastAPI's routing and
dependency machinery, which cost more than the archive read itself for a 0.5 MB CT slice
and about a millisecond of a rendered JPEG's ten.
Anything out of the ordinary (no or bad token, a malformed UID, a query string, an Accept it
does not plainly satisfy, any other error) falls through untouched to the full route, which
answers it.  A refused or missing instance is answered here, with the full route's 404: the
refusal was decided and audited once already.

A de-identified object larger than one sealed segment (1 MiB) is sent as it is opened: the
first segment is authenticated before the status line, each later one before it is sent.
A later segment that fails its check cuts the response (the connection is dropped short of
its Content-Length, so no client takes it for whole), and the request's audit event says so.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from safepacs.api import multipart, pixels
from safepacs.archive.errors import IntegrityError, NotFound
from safepacs.archive.masking import DisplayRequest
from safepacs.archive.service import Streamed

log = logging.getLogger(__name__)

#: :meth:`FastRetrieve._answer`'s answer for a refused or missing instance
_NOT_FOUND = ("", [])

_INSTANCE = re.compile(
    r"^/dicomweb/studies/([0-9.]{1,64})/series/([0-9.]{1,64})/instances/([0-9.]{1,64})(/rendered)?$"
)


class FastRetrieve:
    def __init__(self, app: Any, archive: Any, authenticate: Any, accepted: Any, check_uid: Any,
                 not_found: Any) -> None:
        self.app = app
        self.not_found = not_found  # () -> the full route's 404 response
        self.archive = archive
        self.authenticate = authenticate
        self.accepted = accepted  # Accept header -> set of transfer syntaxes, or None for any
        self.check_uid = check_uid

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("query_string"):
            m = _INSTANCE.match(scope["path"])
            if m is not None:
                answer = self._answer(m.groups()[:3], scope, rendered=m.group(4) is not None)
                if answer is _NOT_FOUND:
                    await self.not_found()(scope, receive, send)
                    return
                if answer is not None:
                    try:
                        await _send(send, *answer)
                    except IntegrityError:
                        # part of the object was sent, all of it authentic: the rest failed
                        log.error("integrity check failed part-way through serving an instance; response cut")
                        scope["state"]["cut"] = "stored object failed its integrity check part-way"
                        raise  # the server drops the connection
                    return
        await self.app(scope, receive, send)

    def _answer(self, uids: tuple[str, ...], scope: dict, *, rendered: bool) -> tuple[str, Streamed] | None:
        """(media type, body), ``_NOT_FOUND``, or None to leave the request to the full
        route."""
        try:
            headers = dict(scope["headers"])
            scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            accept = headers.get(b"accept")
            if rendered:
                fmt = pixels.rendered_format(accept.decode("latin-1") if accept is not None else None)
                if fmt is None:
                    return None
            else:
                wanted = self.accepted(accept.decode("latin-1")) if accept is not None else None
            for uid in uids:
                self.check_uid(uid)
            client = scope.get("client") or ("", 0)
            who = self.authenticate(token.strip(), address=str(client[0] or ""))
            if who is None:
                return None
            scope.setdefault("state", {})["principal"] = who  # for the request's audit event
            study, series, sop = uids
            if rendered:
                image = self.archive.read_instance(
                    sop, principal=who, study_uid=study, series_uid=series,
                    display=DisplayRequest(frame=1, window=None, fmt=fmt, quality=90),
                )
                return f"image/{fmt}", Streamed.whole(bytes(image))
            boundary = secrets.token_hex(16).encode("ascii")
            data = self.archive.read_instance(
                sop, principal=who, study_uid=study, series_uid=series,
                transfer_syntaxes=None if wanted is None or "*" in wanted else wanted,
                frame=lambda size: (
                    b"--" + boundary + multipart.CRLF + multipart.part_header("application/dicom", size),
                    multipart.CRLF + b"--" + boundary + b"--" + multipart.CRLF,
                ),
                stream=True,
            )
        except NotFound:
            # a refusal (or no such instance) was decided and audited: answered as the full
            # route answers it, rather than deciding and auditing it a second time there
            return _NOT_FOUND
        except Exception:  # noqa: BLE001 - the full route gives the error its proper answer
            return None
        return f'multipart/related; type="application/dicom"; boundary={boundary.decode()}', data


async def _send(send: Any, media_type: str, body: Streamed) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", media_type.encode("latin-1")),
                            (b"content-length", str(body.size).encode("ascii"))]})
    for chunk in body.chunks:  # each written as soon as it is opened (see the module doc)
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
