"""The DICOM networking front of the archive (pynetdicom): C-ECHO, C-STORE, C-FIND, C-GET,
C-MOVE.

Associations are accepted only from the configured callers (AE title and address); with no
callers configured, any AE title is accepted from loopback only.  Accepted sockets get
TCP_NODELAY (small PDUs otherwise wait on Nagle/delayed-ACK, ~40 ms per object).

Who is reading: the account named by User Identity Negotiation (username + passcode, or a
JWT access token), else the account bound to the caller's allow-list entry
(``{"ae_title": ..., "host": ..., "account": ..., "tls_cn": ...}``; with ``tls_cn`` only
over TLS with a client certificate of that common name, verified against ``tls_ca``), else
nobody: C-FIND, C-GET and C-MOVE
of a caller without an account are refused (0x0124, not authorised), and every query and
retrieval is filtered by that account's grants like a DICOMweb request.  Storing needs
only the allow-list (modalities do not log in).  A C-MOVE destination is used only by the
callers it names (``{"DEST": {"host": ..., "port": ..., "callers": ["AE1"]}}``; the short
form ``[host, port]`` serves only a caller whose AE title is the destination's own).
Status codes for ingest errors are those of STOW-RS (``safepacs.api.stow``).
"""

from __future__ import annotations

import io
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pydicom
from pydicom import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    UID_dictionary,
)
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    build_context,
    evt,
    register_uid,
)
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from safepacs.api import stow
from safepacs.dicom.transcode import NotConvertible, needs_conversion, to_explicit_little_endian
from safepacs.dimse import query
from safepacs.errors import SafepacsError
from safepacs.store.sealing import Sealed

log = logging.getLogger("safepacs.dimse")

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
IDENTIFIER_MISMATCH = 0xA900
UNABLE_TO_PROCESS = 0xC001
MOVE_DESTINATION_UNKNOWN = 0xA801
NOT_AUTHORIZED = 0x0124
#: a failure of the 0xC000 "unable to process" range: the study is sealed (the caller's
#: grant was checked first, so it may know the study exists; nothing else is said)
SEALED = 0xC5EA
SEALED_COMMENT = "study sealed: opens only with the custodians' approval"  # LO: 64 at most

_FIND_MODELS = {
    PatientRootQueryRetrieveInformationModelFind: "patient",
    StudyRootQueryRetrieveInformationModelFind: "study",
}
_GET_MODELS = {
    PatientRootQueryRetrieveInformationModelGet: "patient",
    StudyRootQueryRetrieveInformationModelGet: "study",
}
_MOVE_MODELS = {
    PatientRootQueryRetrieveInformationModelMove: "patient",
    StudyRootQueryRetrieveInformationModelMove: "study",
}


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def caller_allowed(ae_title: str, host: str, allowed: list[dict]) -> bool:
    """Pure allow-list check; see the module docstring for the empty-list rule."""
    ae_title = ae_title.strip()
    if not allowed:
        return _loopback(host)
    for entry in allowed:
        want_ae = str(entry.get("ae_title", "")).strip()
        want_host = str(entry.get("host", entry.get("address", ""))).strip()
        if want_ae in ("*", ae_title) and (want_host in ("*", host) or (want_host == "localhost" and _loopback(host))):
            return True
    return False


def bound_account(ae_title: str, host: str, allowed: list[dict], cert_cn: str | None = None) -> str | None:
    """The account an allow-list entry binds to this caller, if any (exact AE title and
    address; and, when the entry names ``tls_cn``, a verified TLS client certificate with
    that common name)."""
    ae_title = ae_title.strip()
    for entry in allowed:
        want_host = str(entry.get("host", entry.get("address", ""))).strip()
        want_cn = entry.get("tls_cn")
        if (str(entry.get("ae_title", "")).strip() == ae_title and entry.get("account")
                and (want_host == host or (want_host == "localhost" and _loopback(host)))
                and (not want_cn or want_cn == cert_cn)):
            return str(entry["account"])
    return None


def peer_common_name(assoc: Any) -> str | None:
    """The common name of the caller's TLS client certificate, verified against the
    configured CA (None without TLS or without a certificate)."""
    sock = getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)
    getpeercert = getattr(sock, "getpeercert", None)
    try:
        cert = getpeercert() if getpeercert is not None else None
    except (ValueError, OSError):
        return None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def move_target(name: str, calling_ae: str, destinations: dict[str, Any]) -> tuple[str, int] | None:
    """(host, port) of a C-MOVE destination this caller may send to, else None."""
    dest = destinations.get(name.strip())
    if not dest:
        return None
    if isinstance(dest, dict):
        callers = [str(c).strip() for c in dest.get("callers", [])]
        host, port = dest.get("host"), dest.get("port")
    else:
        callers, (host, port) = [], (dest[0], dest[1])
    if calling_ae.strip() not in callers and calling_ae.strip() != name.strip():
        return None
    return str(host), int(port)  # type: ignore[arg-type]


class Provider:
    """Event handlers bound to one archive."""

    def __init__(self, archive: Any, *, ae_title: str, allowed_callers: list[dict],
                 move_destinations: dict[str, Any]) -> None:
        self.archive = archive
        self.ae_title = ae_title
        self.allowed = list(allowed_callers or [])
        self.destinations = dict(move_destinations or {})

    def handlers(self) -> list[tuple]:
        return [
            (evt.EVT_CONN_OPEN, self.on_open),
            (evt.EVT_USER_ID, self.on_user_id),
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_GET, self.on_get),
            (evt.EVT_C_MOVE, self.on_move),
        ]

    # -- association ---------------------------------------------------------------
    def on_open(self, event: Any) -> None:
        sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def on_requested(self, event: Any) -> None:
        rq = event.assoc.requestor
        calling = rq.primitive.calling_ae_title if rq.primitive else ""
        host = str(rq.address)
        if not caller_allowed(str(calling), host, self.allowed):
            log.warning("association refused: caller not on the allow-list")
            event.assoc.acse.send_reject(0x01, 0x01, 0x03)

    def on_user_id(self, event: Any) -> tuple[bool, bytes | None]:
        """User Identity Negotiation: username + passcode (type 2) or a JWT (type 5)."""
        host = str(event.assoc.requestor.address)
        who = None
        try:
            if event.user_id_type == 2:
                who = self.archive.access.authenticate_dimse(
                    username=_text(event.primary_field), password=_text(event.secondary_field), address=host)
            elif event.user_id_type == 5:
                who = self.archive.access.authenticate_dimse(token=_text(event.primary_field), address=host)
        except Exception as exc:  # noqa: BLE001 - a failed login, never a crash
            log.warning("user identity check failed with %s", type(exc).__name__)
            who = None
        if who is None:
            self._audit(event, "C-ASSOCIATE user identity", outcome=4, reason="authentication failed")
            return False, None
        event.assoc.safepacs_principal = who
        return True, None

    def _principal(self, event: Any) -> Any:
        """The account this association acts for, or None (see the module docstring)."""
        assoc = event.assoc
        who = getattr(assoc, "safepacs_principal", None)
        if who is None:
            rq = assoc.requestor
            name = bound_account(str(rq.ae_title), str(rq.address), self.allowed, peer_common_name(assoc))
            if name is not None:
                who = self.archive.access.principal_for(name, address=str(rq.address), via="dimse")
                assoc.safepacs_principal = who
        return who

    def _audit(self, event: Any, route: str, *, outcome: int = 0, reason: str = "", who: Any = None,
               event_id: str = "", count: int | None = None) -> None:
        from safepacs.audit import events as ev

        rq = event.assoc.requestor
        detail: dict[str, str | int | bool] = {"calling_ae": str(rq.ae_title).strip()}
        if count is not None:
            detail["count"] = count
        self.archive.audit.record(ev.AuditEvent(
            event_id=event_id or ev.APPLICATION_ACTIVITY, action=ev.EXECUTE, outcome=outcome,
            user=getattr(who, "username", "") or f"ae:{str(rq.ae_title).strip()}",
            role=getattr(who, "role", ""), address=str(rq.address), route=route, reason=reason,
            detail=detail))

    # -- services ------------------------------------------------------------------
    def on_echo(self, event: Any) -> int:
        from safepacs.audit import events as ev

        self._audit(event, "C-ECHO", event_id=ev.APPLICATION_ACTIVITY, who=self._principal(event))
        return SUCCESS

    def on_store(self, event: Any) -> int:
        from safepacs.audit import events as ev

        who = getattr(event.assoc, "safepacs_principal", None)
        if who is not None and not self.archive.access.is_store_allowed(who):
            self._audit(event, "C-STORE", outcome=4, reason="role may not store", who=who, event_id=ev.IMPORT)
            return NOT_AUTHORIZED
        try:
            data = part10(event)
            stored = self.archive.ingest(data, source=f"dimse:{str(event.assoc.requestor.ae_title).strip()}")
        except (SafepacsError, OSError, MemoryError) as exc:
            self._audit(event, "C-STORE", outcome=4, reason="object refused", who=who, event_id=ev.IMPORT)
            return stow.failure_reason(exc)
        except Exception as exc:  # noqa: BLE001 - a failure status, never success
            log.error("C-STORE failed with %s", type(exc).__name__)
            self._audit(event, "C-STORE", outcome=8, reason="processing failure", who=who, event_id=ev.IMPORT)
            return stow.PROCESSING_FAILURE
        self.archive.audit.record(ev.AuditEvent(
            event_id=ev.IMPORT, action=ev.CREATE, user=getattr(who, "username", "")
            or f"ae:{str(event.assoc.requestor.ae_title).strip()}", role=getattr(who, "role", ""),
            address=str(event.assoc.requestor.address), route="C-STORE", study_uid=stored.study_uid))
        return SUCCESS

    def _search(self, request: query.Request, who: Any, include: tuple[str, ...]) -> list[Dataset]:
        return self.archive.search(request.level, request.filters, principal=who, include=include)

    def on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        from safepacs.audit import events as ev

        model = _FIND_MODELS.get(event.request.AffectedSOPClassUID, "study")
        who = self._principal(event)
        if who is None:
            self._audit(event, "C-FIND", outcome=4, reason="no account", event_id=ev.QUERY)
            yield NOT_AUTHORIZED, None
            return
        try:
            request = query.parse(event.identifier, model=model)
            results = self._search(request, who, request.return_keys)
        except (ValueError, SafepacsError):
            self._audit(event, "C-FIND", outcome=4, reason="bad identifier", who=who, event_id=ev.QUERY)
            yield IDENTIFIER_MISMATCH, None
            return
        except Exception as exc:  # noqa: BLE001
            log.error("C-FIND failed with %s", type(exc).__name__)
            yield UNABLE_TO_PROCESS, None
            return
        if request.dicom_level == "PATIENT":
            results = query.patients(results)
        self._audit(event, "C-FIND", who=who, event_id=ev.QUERY, count=len(results))
        for ds in results:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, query.answer(ds, request, ae_title=self.ae_title)

    def _matches(self, event: Any, models: dict) -> tuple[list[Any], Any]:
        """The instances an identifier names, as the archive's InstanceRefs."""
        model = models.get(event.request.AffectedSOPClassUID, "study")
        request = query.parse(event.identifier, model=model)
        uid_keys = {"PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"}
        filters = {k: v for k, v in request.filters.items() if k in uid_keys}
        if not filters:
            raise query.IdentifierError("retrieval needs a unique key")
        who = self._principal(event)
        if who is None:
            raise NotAuthorized("no account")
        rows = self.archive.search("instance", filters, principal=who,
                                   include=("StudyInstanceUID", "SeriesInstanceUID"))
        wanted: dict[str, set[str]] = {}
        for row in rows:
            wanted.setdefault(str(row.StudyInstanceUID), set()).add(str(row.SOPInstanceUID))
        refs = []
        for study, sops in wanted.items():
            for ref in self.archive.instances(study_uid=study, principal=who):
                if ref.sop_uid in sops or self.archive.masking.outward(who, ref.sop_uid) in sops:
                    refs.append(ref)
        return refs, who

    def _instances(self, refs: list[Any], who: Any) -> Iterator[Dataset]:
        for ref in refs:
            data = self.archive.read_instance(ref.sop_uid, principal=who)
            yield pydicom.dcmread(io.BytesIO(data))

    def on_get(self, event: Any) -> Iterator[Any]:
        from safepacs.audit import events as ev

        try:
            rows, who = self._matches(event, _GET_MODELS)
        except NotAuthorized:
            self._audit(event, "C-GET", outcome=4, reason="no account", event_id=ev.INSTANCES_TRANSFERRED)
            yield 1
            yield NOT_AUTHORIZED, None
            return
        except (ValueError, SafepacsError):
            self._audit(event, "C-GET", outcome=4, reason="bad identifier", event_id=ev.INSTANCES_TRANSFERRED)
            yield 1  # pynetdicom wants a count before any status
            yield IDENTIFIER_MISMATCH, None
            return
        except Exception as exc:  # noqa: BLE001 - the type only: messages may quote identifiers
            log.error("C-GET failed with %s", type(exc).__name__)
            yield 1
            yield UNABLE_TO_PROCESS, None
            return
        self._audit(event, "C-GET", who=who, event_id=ev.INSTANCES_TRANSFERRED, count=len(rows))
        yield len(rows)
        contexts = list(event.assoc.accepted_contexts)
        yield from self._send(event, rows, who, lambda ds: in_accepted_syntax(ds, contexts))

    def on_move(self, event: Any) -> Iterator[Any]:
        from safepacs.audit import events as ev

        calling = str(event.assoc.requestor.ae_title)
        dest = move_target(_text(event.move_destination), calling, self.destinations)
        if dest is None:
            log.warning("C-MOVE refused: destination is not configured for this caller")
            self._audit(event, "C-MOVE", outcome=4, reason="destination not bound to caller",
                        event_id=ev.INSTANCES_TRANSFERRED)
            yield None, None
            return
        try:
            rows, who = self._matches(event, _MOVE_MODELS)
        except NotAuthorized:
            self._audit(event, "C-MOVE", outcome=4, reason="no account", event_id=ev.INSTANCES_TRANSFERRED)
            yield str(dest[0]), int(dest[1])
            yield 1
            yield NOT_AUTHORIZED, None
            return
        except (ValueError, SafepacsError):
            self._audit(event, "C-MOVE", outcome=4, reason="bad identifier", event_id=ev.INSTANCES_TRANSFERRED)
            yield str(dest[0]), int(dest[1])
            yield 1  # pynetdicom wants a count before any status
            yield IDENTIFIER_MISMATCH, None
            return
        except Exception as exc:  # noqa: BLE001 - the type only: messages may quote identifiers
            log.error("C-MOVE failed with %s", type(exc).__name__)
            yield str(dest[0]), int(dest[1])
            yield 1
            yield UNABLE_TO_PROCESS, None
            return
        contexts = contexts_for(rows)
        self._audit(event, "C-MOVE", who=who, event_id=ev.INSTANCES_TRANSFERRED, count=len(rows))
        # pynetdicom opens the sub-association itself: its accepted contexts are caught as it
        # is established, so each object can be sent in a syntax the destination took
        established: list[Any] = []
        handlers = [(evt.EVT_ESTABLISHED, lambda e: established.append(e.assoc))]
        yield str(dest[0]), int(dest[1]), {"contexts": contexts, "evt_handlers": handlers}
        yield len(rows)

        def convert(ds: Dataset) -> Dataset:
            return in_accepted_syntax(ds, list(established[-1].accepted_contexts)) if established else ds

        yield from self._send(event, rows, who, convert)

    def _send(self, event: Any, rows: list[Any], who: Any,
              convert: Callable[[Dataset], Dataset] | None = None) -> Iterator[Any]:
        for ds in self._instances_safely(rows, who):
            if event.is_cancelled:
                yield CANCEL, None
                return
            if ds is None:
                yield UNABLE_TO_PROCESS, None
                return
            if isinstance(ds, _Refusal):
                yield ds.status, None
                return
            yield PENDING, convert(ds) if convert is not None else ds

    def _instances_safely(self, rows: list[Any], who: Any) -> Iterator[Dataset | _Refusal | None]:
        try:
            yield from self._instances(rows, who)
        except Sealed:
            log.warning("retrieval refused: the study is sealed")
            yield _Refusal(sealed_status())
        except Exception as exc:  # noqa: BLE001 - never send anything after a failed check
            log.error("retrieval failed with %s", type(exc).__name__)
            yield None


def in_accepted_syntax(ds: Dataset, contexts: list[Any]) -> Dataset:
    """``ds`` as the receiver of a C-GET or C-MOVE can take it, by the ``contexts`` its
    association accepted.  A receiver that accepted the object's SOP class only in
    uncompressed little endian syntaxes (DCMTK's getscu and storescp by default, many
    viewers) gets compressed pixel data decompressed, or big endian data re-encoded, rather
    than a failed sub-operation; a lossy original stays marked lossy.  Anything else is sent
    as stored (and fails there if the receiver accepted nothing for it, as before)."""
    stored = str(ds.file_meta.TransferSyntaxUID)
    sop_class = str(ds.get("SOPClassUID", ""))
    offered = {str(cx.transfer_syntax[0]) for cx in contexts
               if str(cx.abstract_syntax) == sop_class and getattr(cx, "as_scu", True)}
    if stored in offered or not needs_conversion(stored):
        return ds
    if all(needs_conversion(t) for t in offered):
        return ds
    try:
        return to_explicit_little_endian(ds)
    except NotConvertible as exc:
        log.warning("retrieval: a stored object could not be converted for the receiver (%s)", exc)
        return ds


class NotAuthorized(Exception):
    """The association has no account to read with."""


class _Refusal:
    """A failure status to send instead of the next object."""

    def __init__(self, status: Dataset) -> None:
        self.status = status


def sealed_status() -> Dataset:
    """The C-GET/C-MOVE failure status for a sealed study, with a fixed Error Comment."""
    status = Dataset()
    status.Status = SEALED
    status.ErrorComment = SEALED_COMMENT
    return status


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace").strip()
    return str(value or "").strip()


def part10(event: Any) -> bytes:
    """The received object as a Part 10 file, as ``event.encoded_dataset(include_meta=True)``
    returns it but with one copy of the (often 8 MB) dataset instead of two: the dataset is
    joined straight from pynetdicom's receive buffer."""
    stream = getattr(getattr(event, "request", None), "DataSet", None)
    if not isinstance(stream, io.BytesIO):
        return event.encoded_dataset(include_meta=True)
    with stream.getbuffer() as view:
        return b"".join((b"\x00" * 128, b"DICM", encode_file_meta(event.file_meta), view))


def contexts_for(refs: list[Any]) -> list[Any]:
    """Presentation contexts for a C-MOVE sub-association: for each SOP class one context
    of the uncompressed little endian syntaxes, and one per other stored syntax, so that a
    destination may accept each apart (an object is then sent as stored, or converted by
    :func:`in_accepted_syntax`).  At most 128 (the standard's limit), uncompressed first."""
    plain = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    others: dict[str, set[str]] = {}
    for r in refs:
        others.setdefault(r.sop_class_uid, set())
        if r.transfer_syntax_uid not in plain:
            others[r.sop_class_uid].add(r.transfer_syntax_uid)
    contexts = [build_context(c, plain) for c in sorted(others)]
    contexts += [build_context(c, [ts]) for c, syntaxes in sorted(others.items()) for ts in sorted(syntaxes)]
    return contexts[:128]


def _recv_exact(self: Any, nr_bytes: int) -> bytearray:
    """``AssociationSocket.recv`` with the same contract (block until ``nr_bytes`` or the peer
    closes; return what arrived), filling one buffer in large reads instead of 4 KiB ``recv``
    calls and appends: about 1000 fewer system calls per 4 MB object."""
    buf = bytearray(nr_bytes)
    view = memoryview(buf)
    got = 0
    while got < nr_bytes:
        n = self.socket.recv_into(view[got:], min(nr_bytes - got, 1 << 20))
        if not n:
            del view
            return buf[:got]
        got += n
    del view
    return buf


def decode_p_data(self: Any, bytestream: bytes | bytearray) -> None:
    """``P_DATA_TF.decode`` with the same result, except that each presentation data value
    is a view into the received PDU instead of a copy: pynetdicom's decoder slices every
    128 KB fragment twice more before it is appended to the dataset, three copies of each
    object where one (the append) suffices.  Malformed item lengths raise, as there."""
    from pynetdicom.pdu_items import PresentationDataValueItem

    view = memoryview(bytestream)
    items = []
    offset, end = 6, len(view)
    while offset < end:
        if offset + 5 > end:
            raise ValueError("truncated presentation data value item")
        length = int.from_bytes(view[offset : offset + 4], "big")
        if length < 1 or offset + 4 + length > end:
            raise ValueError("presentation data value item length out of range")
        item = PresentationDataValueItem()
        item.presentation_context_id = view[offset + 4]
        item.presentation_data_value = view[offset + 5 : offset + 4 + length]
        items.append(item)
        offset += 4 + length
    self.presentation_data_value_items = items


def _speed_up_pynetdicom() -> None:
    from pynetdicom.pdu import P_DATA_TF
    from pynetdicom.transport import AssociationSocket

    if AssociationSocket.recv is not _recv_exact:
        AssociationSocket.recv = _recv_exact  # type: ignore[method-assign]
    if P_DATA_TF.decode is not decode_p_data:
        P_DATA_TF.decode = decode_p_data  # type: ignore[method-assign]


#: Retired storage SOP classes that old modalities still send (pynetdicom lists current
#: ones only): refusing the association would lose their images.  Stored like any other.
RETIRED_STORAGE = {
    uid: entry[4] for uid, entry in UID_dictionary.items()
    if entry[4] in {
        "UltrasoundImageStorageRetired", "UltrasoundMultiFrameImageStorageRetired",
        "NuclearMedicineImageStorageRetired", "XRayAngiographicBiPlaneImageStorage",
        "VLImageStorageTrial", "VLMultiFrameImageStorageTrial", "TextSRStorageTrial",
        "DetailSRStorageTrial", "ComprehensiveSRStorageTrial", "WaveformStorageTrial",
    }
}


def make_ae(ae_title: str) -> AE:
    _speed_up_pynetdicom()
    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = 0  # unlimited: fewer, larger P-DATA PDUs
    ae.network_timeout = 60
    ae.dimse_timeout = 120
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
    for uid, keyword in RETIRED_STORAGE.items():
        register_uid(uid, keyword, StorageServiceClass)  # else pynetdicom aborts their C-STOREs
    for uid in (*(cx.abstract_syntax for cx in AllStoragePresentationContexts), *RETIRED_STORAGE):
        ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES, scp_role=True, scu_role=False)
    for model in (*_FIND_MODELS, *_GET_MODELS, *_MOVE_MODELS):
        ae.add_supported_context(model)
    return ae


def start(archive: Any, *, host: str, port: int, ae_title: str, allowed_callers: list[dict] | None = None,
          move_destinations: dict[str, Any] | None = None, ssl_context: ssl.SSLContext | None = None) -> Any:
    """Start the SCP in background threads; returns the server (``.shutdown()`` to stop)."""
    provider = Provider(archive, ae_title=ae_title, allowed_callers=allowed_callers or [],
                        move_destinations=move_destinations or {})
    ae = make_ae(ae_title)
    return ae.start_server((host, port), block=False, evt_handlers=provider.handlers(),
                           ssl_context=ssl_context)
