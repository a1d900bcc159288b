"""The DICOMweb (PS3.18) front of the archive: STOW-RS, QIDO-RS, WADO-RS.

Routes only translate HTTP to calls of ``safepacs.archive.service.Archive`` and back.  Every
route needs ``Authorization: Bearer <token>``; path UIDs are checked before anything touches
storage; every error is a JSON body ``{"error": ..., "status": ...}`` whose message never
holds a value taken from a stored or uploaded object.

Short archive calls (token check, search, instance reads: under a millisecond to a few) run
on the event loop, because a hop to a worker thread and back costs more than they do under
load; ingest, rendering and frame extraction run in worker threads.
"""

import contextlib
import io
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Annotated, Any

import anyio
import pydicom
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydicom.uid import ExplicitVRLittleEndian
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from safepacs.api import dicomjson, framemedia, multipart, pixels, query, stow
from safepacs.api.auditing import AuditRequests
from safepacs.api.fastpath import FastRetrieve
from safepacs.api.tokens import TokenCache, token_in_query
from safepacs.archive import errors as aerr
from safepacs.archive.masking import DisplayRequest
from safepacs.dicom.transcode import NotConvertible, to_explicit_little_endian
from safepacs.errors import SafepacsError
from safepacs.index.query import QueryError
from safepacs.render.render import RenderError
from safepacs.store.blobs import StoreError
from safepacs.store.sealing import SEALED_MESSAGE, Sealed

log = logging.getLogger("safepacs.api")

_UID_IN_PATH = re.compile(r"\d+(?:\.\d+)+")


def loggable_path(path: str) -> str:
    """``path`` with every UID replaced by ``{uid}``: a STOW-RS URL names the sender's
    ORIGINAL StudyInstanceUID, which is identifying (Annex E) and must not reach a log."""
    return _UID_IN_PATH.sub("{uid}", path)
UID = re.compile(r"^[0-9.]{1,64}$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]{1,253})(:[0-9]{1,5})?$")
DICOM_JSON = "application/dicom+json"
MiB = 1024 * 1024


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def check_uid(value: str, what: str = "UID") -> str:
    if not UID.match(value) or ".." in value or value.startswith(".") or value.endswith("."):
        raise ApiError(400, f"malformed {what} in the URL")
    return value


def create_app(archive: Any, *, max_part_bytes: int = 1024 * MiB,
               max_request_bytes: int = 2048 * MiB, ingest_threads: int | None = None,
               cors_origins: Sequence[str] = ()) -> FastAPI:
    """A FastAPI app serving ``archive`` under ``/dicomweb``.

    ``cors_origins``: web origins whose pages may call it from a browser (a viewer served
    from another host); none by default, so browsers refuse cross-origin reads.

    A STOW-RS request is parsed whole before anything is ingested (a truncated upload stores
    nothing), so its parts are held in memory: ``max_request_bytes`` bounds that (413 above);
    send big studies in several requests.
    """
    app = FastAPI(title="safepacs", docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    authenticate = TokenCache(archive.authenticate)
    # Ingest waits on fsync and the database as much as on the CPU: two per core keeps both busy.
    limiter = anyio.CapacityLimiter(ingest_threads or 2 * (os.cpu_count() or 2))

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(multipart.MultipartError)
    async def _mp_error(_: Request, exc: multipart.MultipartError) -> JSONResponse:
        return error_response(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        where = sorted({".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()})
        return error_response(400, "invalid request parameters: " + ", ".join(where))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(aerr.NotFound)
    async def _not_found(_: Request, exc: Exception) -> JSONResponse:
        return error_response(404, "not found")

    @app.exception_handler(aerr.IntegrityError)
    async def _integrity(request: Request, exc: Exception) -> JSONResponse:
        log.error("integrity check failed serving %s", loggable_path(request.url.path))
        return error_response(500, "stored object failed its integrity check; nothing was served")

    @app.exception_handler(Sealed)
    async def _sealed(request: Request, exc: Exception) -> JSONResponse:
        # authorize() ran first: the caller may know the study exists, not more
        log.warning("sealed study refused serving %s", loggable_path(request.url.path))
        return error_response(403, SEALED_MESSAGE)

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: Exception) -> JSONResponse:
        # too few intact shards, an unreachable node: the type only (messages name blobs)
        log.error("%s serving %s", type(exc).__name__, loggable_path(request.url.path))
        return error_response(500, "stored object unavailable (storage nodes lost or unreachable); nothing was served")

    @app.exception_handler(aerr.Unauthorized)
    async def _unauth(_: Request, exc: Exception) -> JSONResponse:
        return error_response(401, "unauthorized", {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(BadRequest)
    async def _bad(_: Request, exc: BadRequest) -> JSONResponse:
        return error_response(400, str(exc) or "invalid request")

    @app.exception_handler(RenderError)
    async def _render(request: Request, exc: Exception) -> JSONResponse:
        # render messages name no values (e.g. "pixel data cannot be watermarked (...)")
        log.error("%s serving %s: %s", type(exc).__name__, loggable_path(request.url.path), exc)
        return error_response(500, f"this object cannot be served at your access level: {exc}")

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> JSONResponse:
        # The type only: messages of third-party exceptions may quote file contents.
        log.error("%s failed serving %s", type(exc).__name__, loggable_path(request.url.path))
        return error_response(500, "internal error")

    async def principal(request: Request) -> Any:
        # Runs on the event loop: a token lookup is shorter than a hop to a worker thread.
        if token_in_query(request.query_params.keys()):
            request.state.refusal = "token in the URL"
            raise ApiError(400, "tokens are accepted only in the Authorization header, never in the URL")
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            request.state.refusal = "no credentials"
            raise ApiError(401, "authentication required (Authorization: Bearer <token>)",
                           {"WWW-Authenticate": "Bearer"})
        who = authenticate(token.strip(), address=client_address(request))
        if who is None:
            request.state.refusal = "invalid token"
            raise ApiError(401, "invalid or expired token", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        request.state.principal = who
        return who

    Who = Annotated[Any, Depends(principal)]

    def base(request: Request) -> str:
        # Some clients (requests via dicomweb-client) send Host without the port; then the
        # port we listen on is added, unless it is the scheme's default.
        scheme = request.url.scheme
        server = request.scope.get("server") or ("127.0.0.1", 80)
        host = request.headers.get("host", "")
        m = _HOST.match(host)
        if not m:
            host = f"[{server[0]}]" if ":" in server[0] else server[0]
        if not (m and m.group(2)) and server[1] != {"http": 80, "https": 443}.get(scheme):
            host = f"{host}:{server[1]}"
        return f"{scheme}://{host}/dicomweb"

    # ---------------------------------------------------------------- STOW-RS

    async def store(request: Request, study: str | None, who: Any) -> Response:
        if not archive.access.is_store_allowed(who):
            request.state.refusal = "role may not store"
            raise ApiError(403, "this account may not store objects")
        boundary, params = multipart.boundary_of(request.headers.get("content-type"))
        root_type = params.get("type", "application/dicom").lower()
        if root_type != "application/dicom":
            raise ApiError(415, "only multipart/related; type=\"application/dicom\" is accepted")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_request_bytes):
            raise ApiError(413 if declared.isdigit() else 400, "request body too large or malformed Content-Length")
        parser = multipart.Parser(boundary, max_part_bytes=max_part_bytes)
        parts: list[multipart.Part] = []
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_request_bytes:
                raise ApiError(413, "request body too large")
            parts.extend(parser.feed(chunk))
        parser.close()
        for p in parts:
            if p.content_type not in (None, "application/dicom"):
                raise ApiError(415, "every part must be application/dicom")
        outcomes: list[Any] = [None] * len(parts)

        async def one(i: int, part: multipart.Part) -> None:
            outcomes[i] = await anyio.to_thread.run_sync(_ingest_one, part.content, study, limiter=limiter)

        async with anyio.create_task_group() as tg:
            for i, p in enumerate(parts):
                tg.start_soon(one, i, p)
        code = stow.status_code(outcomes)
        # the URL names the ORIGINAL study; the response points at its de-identified twin
        stored_study = next((o.study_uid for o in outcomes if not isinstance(o, stow.Failure)), None)
        study_url = f"{base(request)}/studies/{stored_study}" if study and stored_study else None
        body = stow.response(outcomes, base(request), study_url)
        return Response(dicomjson.dumps([body])[1:-1], status_code=code, media_type=DICOM_JSON)

    def _ingest_one(data: bytes, study: str | None) -> Any:
        if not data:
            return stow.Failure(stow.CANNOT_UNDERSTAND)
        if study is not None and _original_study(data) not in (study, None):
            return stow.Failure(stow.DIFFERENT_STUDY)
        try:
            return archive.ingest(data, source="stow-rs")
        except (SafepacsError, OSError, MemoryError) as exc:
            return stow.Failure(stow.failure_reason(exc))
        except Exception as exc:  # noqa: BLE001 - one bad part must not fail the others
            log.error("ingest failed with %s", type(exc).__name__)
            return stow.Failure(stow.PROCESSING_FAILURE)

    @app.post("/dicomweb/studies")
    async def stow_studies(request: Request, who: Who) -> Response:
        return await store(request, None, who)

    @app.post("/dicomweb/studies/{study}")
    async def stow_study(study: str, request: Request, who: Who) -> Response:
        return await store(request, check_uid(study), who)

    # ---------------------------------------------------------------- QIDO-RS

    def search(request: Request, level: str, who: Any, study: str | None = None,
               series: str | None = None) -> Response:
        if getattr(who, "is_admin", False):  # administrators are refused every image route
            request.state.refusal = "administrators have no access to images"
            raise ApiError(403, "administrators have no access to images")
        with bad_request():
            q = query.parse(request.query_params.multi_items())
        include: tuple[str, ...] = ("all",) if q.include_all else q.include
        with bad_request():  # the service's messages for malformed filters name the problem only
            results = archive.search(level, q.filters, principal=who, study_uid=study, series_uid=series,
                                     limit=q.limit, offset=q.offset, include=include, fuzzy=q.fuzzy)
        b = base(request)
        out = []
        for ds in results:
            obj = dicomjson.to_json(ds)
            url = _retrieve_url(b, level, ds, study, series)
            if url:
                obj["00081190"] = {"vr": "UR", "Value": [url]}
            out.append(obj)
        return Response(dicomjson.dumps(out), media_type=DICOM_JSON)

    @app.get("/dicomweb/studies")
    async def qido_studies(request: Request, who: Who) -> Response:
        return search(request, "study", who)

    @app.get("/dicomweb/series")
    async def qido_all_series(request: Request, who: Who) -> Response:
        return search(request, "series", who)

    @app.get("/dicomweb/instances")
    async def qido_all_instances(request: Request, who: Who) -> Response:
        return search(request, "instance", who)

    @app.get("/dicomweb/studies/{study}/series")
    async def qido_series(study: str, request: Request, who: Who) -> Response:
        return search(request, "series", who, check_uid(study))

    @app.get("/dicomweb/studies/{study}/instances")
    async def qido_study_instances(study: str, request: Request, who: Who) -> Response:
        return search(request, "instance", who, check_uid(study))

    @app.get("/dicomweb/studies/{study}/series/{series}/instances")
    async def qido_instances(study: str, series: str, request: Request,
                       who: Who) -> Response:
        return search(request, "instance", who, check_uid(study), check_uid(series))

    # ---------------------------------------------------------------- WADO-RS

    def refs(who: Any, study: str, series: str | None = None, sop: str | None = None) -> list[Any]:
        check_uid(study)
        if series is not None:
            check_uid(series)
        if sop is not None:
            check_uid(sop)
        found = archive.instances(study_uid=study, series_uid=series, sop_uid=sop, principal=who)
        if not found:
            raise aerr.NotFound("no such instance")
        return found

    def retrieve(request: Request, who: Any, found: list[Any]) -> Response:
        wanted = _accepted_transfer_syntaxes(request.headers.get("accept"))
        convert = set()
        for r in found:
            if wanted is not None and "*" not in wanted and r.transfer_syntax_uid not in wanted:
                if ExplicitVRLittleEndian not in wanted:
                    raise ApiError(406, "the stored transfer syntax was not acceptable; objects are "
                                        "sent as stored or as Explicit VR Little Endian")
                convert.add(r.sop_uid)

        def read(sop_uid: str) -> bytes:
            data = archive.read_instance(sop_uid, principal=who)
            if sop_uid not in convert:
                return data
            try:
                return transcode_part10(data)
            except NotConvertible as exc:
                raise ApiError(406, f"an object cannot be sent as Explicit VR Little Endian ({exc}); "
                                    "ask for it as stored (transfer-syntax=*)") from None

        boundary = secrets.token_hex(16)
        media = f'multipart/related; type="application/dicom"; boundary={boundary}'
        if len(found) == 1:  # one object: sized response, sent without copying or threads
            data = read(found[0].sop_uid)
            return sized(list(multipart.encode(iter([("application/dicom", data)]), boundary)), media)

        # Read the first object now so a missing or corrupt one is an error status, not a cut stream.
        first = read(found[0].sop_uid)

        def parts() -> Iterator[tuple[str, bytes]]:
            yield "application/dicom", first
            for r in found[1:]:
                yield "application/dicom", read(r.sop_uid)

        async def body() -> AsyncIterator[bytes]:
            for chunk in multipart.encode(parts(), boundary):
                yield chunk

        return StreamingResponse(body(), media_type=media)

    @app.get("/dicomweb/studies/{study}")
    async def wado_study(study: str, request: Request, who: Who) -> Response:
        return retrieve(request, who, refs(who, study))

    @app.get("/dicomweb/studies/{study}/series/{series}")
    async def wado_series(study: str, series: str, request: Request, who: Who) -> Response:
        return retrieve(request, who, refs(who, study, series))

    @app.get("/dicomweb/studies/{study}/series/{series}/instances/{sop}")
    async def wado_instance(study: str, series: str, sop: str, request: Request,
                      who: Who) -> Response:
        return retrieve(request, who, refs(who, study, series, sop))

    def metadata(request: Request, who: Any, found: list[Any]) -> Response:
        b = base(request)
        out = []
        for r in found:
            ds, pixel = archive.header(r.sop_uid, principal=who)
            # the UIDs this reader's URLs use: a research project's or a grant's own, the
            # archive's for everybody else (an identified copy's original UIDs name nothing here)
            uids = tuple(archive.masking.outward(who, u) for u in (r.study_uid, r.series_uid, r.sop_uid))
            link = "{}/studies/{}/series/{}/instances/{}".format(b, *uids)
            obj = dicomjson.to_json(ds, bulk_base=link)
            dicomjson.add_bulk_pixel_link(obj, pixel, link)
            out.append(obj)
        return Response(dicomjson.dumps(out), media_type=DICOM_JSON)

    @app.get("/dicomweb/studies/{study}/metadata")
    async def meta_study(study: str, request: Request, who: Who) -> Response:
        return metadata(request, who, refs(who, study))

    @app.get("/dicomweb/studies/{study}/series/{series}/metadata")
    async def meta_series(study: str, series: str, request: Request, who: Who) -> Response:
        return metadata(request, who, refs(who, study, series))

    @app.get("/dicomweb/studies/{study}/series/{series}/instances/{sop}/metadata")
    async def meta_instance(study: str, series: str, sop: str, request: Request,
                      who: Who) -> Response:
        return metadata(request, who, refs(who, study, series, sop))

    def one_instance(who: Any, study: str, series: str, sop: str, **kwargs: Any) -> bytes | bytearray:
        """One instance at the caller's level: ``read_instance`` finds it, checks it belongs to
        the study and series, and decides access once (no separate listing first)."""
        for uid in (study, series, sop):
            check_uid(uid)
        return archive.read_instance(sop, principal=who, study_uid=study, series_uid=series, **kwargs)

    def dataset(who: Any, study: str, series: str, sop: str) -> pydicom.Dataset:
        return pydicom.dcmread(io.BytesIO(one_instance(who, study, series, sop)))

    def octets(items: list[tuple[str, bytes]], kind: str = framemedia.OCTET) -> Response:
        boundary = secrets.token_hex(16)
        return sized(list(multipart.encode(iter(items), boundary)),
                     f'multipart/related; type="{kind}"; boundary={boundary}')

    @app.get("/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/{frame_list}")
    def wado_frames(study: str, series: str, sop: str, frame_list: str,
                    request: Request, who: Who) -> Response:
        numbers = _frame_numbers(frame_list)
        ds = dataset(who, study, series, sop)
        reply = framemedia.negotiate(request.headers.get("accept"), str(ds.file_meta.TransferSyntaxUID))
        if reply is None:
            raise ApiError(406, "frames are sent in their stored transfer syntax (named in the "
                                "metadata) or as uncompressed application/octet-stream")
        try:
            got = (pixels.native_frames if reply.decode else pixels.frames)(ds, numbers)
        except aerr.BadFrame as exc:
            raise ApiError(400, str(exc)) from None
        except pixels.NotDecodable as exc:
            raise ApiError(406, str(exc)) from None
        except LookupError as exc:
            raise ApiError(404, str(exc)) from None
        part = f"{reply.media_type}; transfer-syntax={reply.transfer_syntax}"
        return octets([(part, f) for f in got], reply.media_type)

    @app.get("/dicomweb/studies/{study}/series/{series}/instances/{sop}/bulkdata/{tag}")
    def wado_bulk(study: str, series: str, sop: str, tag: str, who: Who) -> Response:
        if not re.fullmatch(r"[0-9A-Fa-f]{8}", tag):
            raise ApiError(400, "malformed tag in the URL")
        ds = dataset(who, study, series, sop)
        key = int(tag, 16)
        if key not in ds or ds[key].VR not in dicomjson.BULK_VRS:
            raise ApiError(404, "no such bulk data element")
        value = ds[key].value
        return octets([("application/octet-stream", bytes(value or b""))])

    def rendered(request: Request, who: Any, study: str, series: str, sop: str, frame: int) -> Response:
        fmt = pixels.rendered_format(request.headers.get("accept"))
        if fmt is None:
            raise ApiError(406, "rendered media types offered: image/png, image/jpeg")
        with bad_request():
            window = pixels.parse_window(request.query_params.get("window"))
        quality = request.query_params.get("quality", "90")
        if not quality.isdigit() or not 1 <= int(quality) <= 100:
            raise ApiError(400, "quality must be 1..100")
        # the pixels of the reader's level, marked in display values under one serial
        want = DisplayRequest(frame=frame, window=window, fmt=fmt, quality=int(quality))
        try:
            image = one_instance(who, study, series, sop, display=want)
        except aerr.BadFrame as exc:
            raise ApiError(400, str(exc)) from None
        except LookupError as exc:
            raise ApiError(404, str(exc)) from None
        return Response(bytes(image), media_type=f"image/{fmt}")

    @app.get("/dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered")
    def wado_rendered(study: str, series: str, sop: str, request: Request,
                      who: Who) -> Response:
        return rendered(request, who, study, series, sop, 1)

    @app.get("/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/rendered")
    def wado_frame_rendered(study: str, series: str, sop: str, frame: str, request: Request,
                            who: Who) -> Response:
        numbers = _frame_numbers(frame)
        if len(numbers) != 1:
            raise ApiError(400, "render one frame at a time")
        return rendered(request, who, study, series, sop, numbers[0])

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    mount_api_routes(app, archive, principal)
    app.add_middleware(FastRetrieve, archive=archive, authenticate=authenticate,
                       accepted=_accepted_transfer_syntaxes, check_uid=check_uid,
                       not_found=lambda: error_response(404, "not found"))
    app.add_middleware(AuditRequests, sink=archive.audit)  # sees every request that reaches the archive
    if cors_origins:
        # outside the audit: a browser's preflight (OPTIONS, no credentials) reads nothing, and
        # is answered here from the list alone; the request it clears is audited as any other
        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors_origins), allow_credentials=False,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Accept", "Content-Type"],
            expose_headers=["Content-Type", "Content-Length", "Content-Location", "Warning",
                            "Retry-After", "WWW-Authenticate"],
            max_age=600,
        )
    app.state.started = time.time()
    return app


def mount_api_routes(app: FastAPI, archive: Any, principal: Any) -> None:
    """The ``/api`` routes: sign-in and administration (access control), the patient's access
    log and the auditor's trail.  Each role check refuses with 403 and leaves the reason for
    the request's audit event."""
    from sqlalchemy import select

    from safepacs.access.models import Account
    from safepacs.api.admin import admin_router
    from safepacs.api.audit_routes import PatientCaller, audit_router
    from safepacs.audit.service import AuditService

    def role_in(*roles: str) -> Any:
        async def check(request: Request, who: Annotated[Any, Depends(principal)]) -> Any:
            if who.role not in roles:
                request.state.refusal = "role may not use this route"
                raise ApiError(403, "your role may not use this route")
            return who
        return check

    async def patient(request: Request, who: Annotated[Any, Depends(principal)]) -> PatientCaller:
        pseudonym = None
        if who.role == "patient":
            with archive.access.ctx.engine.connect() as conn:
                pseudonym = conn.scalar(select(Account.patient_pseudonym).where(Account.pk == who.account_id))
        if not pseudonym:
            request.state.refusal = "not a patient account linked to a patient"
            raise ApiError(403, "only a patient account linked to its patient record may use this route")
        return PatientCaller(pseudonym=pseudonym, username=who.username, address=who.address)

    app.include_router(admin_router(archive.access))
    service = AuditService(archive.access.ctx.engine, audit=archive.audit)
    app.include_router(audit_router(
        service, auditor_principal=role_in("security_auditor"), patient_principal=patient,
        alerts_principal=role_in("security_auditor", "security_admin"),
        public_key=getattr(archive.audit, "public_key", None)))


class BadRequest(Exception):
    """A 400 whose message is ours (query parsing, frame numbers), safe to show."""


@contextlib.contextmanager
def bad_request() -> Iterator[None]:
    """:class:`QueryError` of the block (a malformed request, named without values) becomes
    a 400 with its message; any other error is a 500 without one, since a library's message
    may quote file contents (a ValueError from parsing a stored object, say)."""
    try:
        yield
    except QueryError as exc:
        raise BadRequest(str(exc)) from None


def sized(chunks: list[bytes], media_type: str) -> StreamingResponse:
    """A response of known length from chunks already in memory (no join, no thread hops)."""

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return StreamingResponse(body(), media_type=media_type,
                             headers={"Content-Length": str(sum(len(c) for c in chunks))})


def _original_study(data: bytes) -> str | None:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
        return str(ds.get("StudyInstanceUID", "")) or None
    except Exception:  # noqa: BLE001 - ingest reports the real reason
        return None


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def _frame_numbers(text: str) -> list[int]:
    items = text.split(",")
    if not 1 <= len(items) <= 10_000 or not all(i.isdigit() and len(i) < 10 for i in items):
        raise ApiError(400, "frame list must be comma-separated positive integers")
    numbers = [int(i) for i in items]
    if min(numbers) < 1:
        raise ApiError(400, "frame numbers start at 1")
    return numbers


def transcode_part10(data: bytes) -> bytes:
    """A Part 10 file as Explicit VR Little Endian (:mod:`safepacs.dicom.transcode`), with its
    preamble and file meta; :class:`NotConvertible` when that cannot be done faithfully."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - it was stored, so it parsed once; never echo values
        raise NotConvertible("the stored object cannot be read") from None
    out = to_explicit_little_endian(ds)
    buf = io.BytesIO()
    try:
        out.save_as(buf, enforce_file_format=True)
    except Exception:  # noqa: BLE001 - pydicom's writer messages may quote values
        raise NotConvertible("the converted object cannot be encoded") from None
    return buf.getvalue()


def _accepted_transfer_syntaxes(accept: str | None) -> set[str] | None:
    """Transfer syntaxes named in an Accept header for application/dicom, or None for any."""
    if not accept:
        return None
    wanted: set[str] = set()
    any_ok = False
    for item in accept.split(","):
        kind, params = multipart.media_type(item)
        if kind in ("*/*", "multipart/*"):
            any_ok = True
            continue
        if kind == "multipart/related":
            t = params.get("type", "application/dicom").lower()
            if t not in ("application/dicom", "*/*", "application/*"):
                continue
        elif kind != "application/dicom":
            continue
        ts = params.get("transfer-syntax")
        if ts is None:
            any_ok = True
        else:
            wanted.add(ts)
    if any_ok:
        return None
    if not wanted:
        raise ApiError(406, 'retrieve answers multipart/related; type="application/dicom"')
    return wanted


def _retrieve_url(b: str, level: str, ds: pydicom.Dataset, study: str | None, series: str | None) -> str | None:
    st = str(ds.get("StudyInstanceUID", "") or study or "")
    if not st:
        return None
    if level == "study":
        return f"{b}/studies/{st}"
    se = str(ds.get("SeriesInstanceUID", "") or series or "")
    if not se:
        return None
    if level == "series":
        return f"{b}/studies/{st}/series/{se}"
    sop = str(ds.get("SOPInstanceUID", ""))
    return f"{b}/studies/{st}/series/{se}/instances/{sop}" if sop else None
