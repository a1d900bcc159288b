"""What one reader gets: the archive's glue between access decisions and rendering.

The access layer decides, per study, whether a caller may read it and at which level; the
render package turns a stored object into that level's version.  This module holds what
sits between them and needs the archive's state: the render keys, the issuance register
(every watermarked copy gets a serial first), the per-reader identifier spaces, and the
translation of a reader's identifiers back to stored ones.

Identifier spaces: a research project sees UIDs and pseudonyms re-keyed with its project
key; a third party sees UIDs keyed per grant (stable for that grant, linking to nothing
else).  Their URLs and query filters use those identifiers, so :meth:`Masking.resolve` maps
them back, through a map built from the studies the reader may see (and only those: an
identifier of any other study resolves to nothing).

Caching: the rendered version of an instance is kept only sealed (``RenderCache``: AES-GCM
under the render cache key, on disk under keyed-hash names) and only BEFORE marking, keyed
by (instance, level, partition): the project for re-keyed levels, the grant (or account)
whose UID space a ``fresh`` level uses, nothing for the others.  The cache is consulted
only after the caller's grant was checked for this request, so a revoked grant, an ended
project or an ended care relationship never gets a cached copy; entries left behind are
unreadable without the key and go with eviction or a restart (``invalidate`` drops them at
once when a caller knows).  Every copy that leaves is marked as it leaves, under its own
issuance serial.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom
from pydicom import Dataset
from sqlalchemy import Engine, select

from safepacs.access.levels import LevelRegistry
from safepacs.access.principal import Decision, Principal
from safepacs.archive.errors import BadFrame
from safepacs.dicom.image import frame_count, pixel_keyword
from safepacs.index.models import Instance, Patient, Series, Study
from safepacs.index.query import QueryError
from safepacs.render import display
from safepacs.render import render as rnd
from safepacs.render.cache import RenderCache
from safepacs.render.issuance import Issuances
from safepacs.render.keys import RenderKeys
from safepacs.render.levels import Level

if TYPE_CHECKING:
    from safepacs.store.service_keys import SecretSource

#: roles whose identifiers differ from the stored ones
_OWN_SPACES = ("researcher", "third_party")
#: roles allowed to match identity attributes against original values (all of them read at
#: the identified level; the results are still limited to studies they may see)
_IDENTITY_ROLES = ("physician", "radiologist", "patient")
_IDENTITY_FILTERS = ("PatientID", "PatientName", "AccessionNumber", "IssuerOfPatientID")
_UID_FILTERS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_MAP_TTL = 30.0
#: sealed rendered objects kept at most (the cache evicts the least recently used)
CACHE_BYTES = 512 << 20


@dataclass(frozen=True)
class DisplayRequest:
    """A rendered (PNG/JPEG) view of one frame instead of the DICOM object."""

    frame: int = 1
    window: tuple[float, float] | None = None
    fmt: str = "png"
    quality: int = 90


@dataclass
class _Space:
    built: float
    inward: dict[str, str]  # reader's identifier -> stored
    outward: dict[str, str]  # stored -> reader's identifier


class Masking:
    def __init__(self, access: Any, engine: Engine, keys_dir: Path | SecretSource, *, audit: Any,
                 cache_dir: Path | None = None, cache_bytes: int = CACHE_BYTES) -> None:
        self.access = access
        self._engine = engine
        self.keys = RenderKeys.load(keys_dir)  # an archive's wrapped secret, or a bare folder's file
        folder = Path(keys_dir) if isinstance(keys_dir, (str, os.PathLike)) else keys_dir.keys_dir
        #: rendered objects before marking, sealed; in the data dir beside the keys folder,
        #: one folder per process (a CLI export beside the server must not empty its cache)
        cache_mb = os.environ.get("SAFEPACS_RENDER_CACHE_MB", "")  # 0 turns caching off
        if cache_mb.isdigit():
            cache_bytes = int(cache_mb) << 20
        self.cache = RenderCache(self.keys.cache, max_bytes=cache_bytes,
                                 directory=cache_dir or _process_cache_dir(folder.parent / "cache"))
        #: built-in + site levels (the security administrator's, in the index database)
        self.registry = LevelRegistry(engine)
        self.issuances = Issuances(engine, audit=audit)
        self._spaces: dict[int, _Space] = {}
        self._lock = threading.Lock()

    # --- decisions ------------------------------------------------------------------------
    def decision_quietly(self, principal: Principal, study_uid: str) -> Decision:
        """The read decision without an audit event: used to shape results the caller was
        already audited for (a query's rows, identifier maps)."""
        return self.access.decide(principal, study_uid, action="read", audit=False)

    @property
    def levels(self) -> dict[str, Level]:
        return self.registry.all()

    def level(self, decision: Decision) -> Level:
        found = self.registry.get(decision.level or "")
        if found is None:  # a level the site removed: fail closed
            raise LookupError("the decided access level is not defined")
        return found

    def needs_delta(self, decision: Decision) -> bool:
        return self.level(decision).needs_delta

    def may_match_identity(self, principal: Principal) -> bool:
        return principal.role in _IDENTITY_ROLES

    # --- contexts -------------------------------------------------------------------------
    def context(self, principal: Principal, decision: Decision, *, serial: int | None = None) -> rnd.RenderContext:
        project = self.keys.project(decision.project) if decision.project else None
        scope = self._scope(principal, decision)
        salt = hmac.new(self.keys.cache, b"uid space\x00" + scope.encode(), hashlib.sha256).digest()
        return rnd.RenderContext(project_key=project, serial=serial, watermark_key=self.keys.watermark,
                                 request_salt=salt)

    def _uid_map(self, principal: Principal, decision: Decision) -> Callable[[str], str]:
        level = self.level(decision)
        mapper = rnd.uid_mapper(level, self.context(principal, decision))
        return mapper or (lambda uid: uid)

    # --- rendering ------------------------------------------------------------------------
    def cached(self, principal: Principal, decision: Decision, sop_uid: str) -> bytes | None:
        """The unmarked rendered object from the cache, or None.  Call only after the
        caller's grant was checked for this request."""
        level = self.level(decision)
        if not self._cacheable(level):
            return None
        return self.cache.get(sop_uid, level.cache_name, self._partition(principal, decision, level),
                              account=principal.account_id)

    def render_plain(self, principal: Principal, decision: Decision, stored: bytes, delta: bytes | None,
                     *, sop_uid: str) -> bytes:
        """The object at the caller's level WITHOUT the per-copy marks (cached sealed)."""
        level = self.level(decision)
        plain = dataclasses.replace(level, watermark=False, private_mark=False)
        data = rnd.render_instance(stored, delta, plain, self.context(principal, decision))
        if self._cacheable(level):
            self.cache.put(sop_uid, level.cache_name, self._partition(principal, decision, level), data,
                           account=principal.account_id)
        return data

    def finish(self, principal: Principal, decision: Decision, plain: bytes, *, sop_uid: str,
               request_id: str = "", header_only: bool = False) -> bytes:
        """What leaves: the object, marked as the level says under one issuance serial, or
        its header only (nothing to mark, nothing issued)."""
        level = self.level(decision)
        if header_only:
            return plain
        if not (level.watermark or level.private_mark):
            return plain

        def marked(serial: int) -> bytes:
            ctx = self.context(principal, decision, serial=serial)
            ds = _parse(plain)
            try:
                if level.watermark:
                    try:
                        rnd.mark_pixels(ds, serial, ctx.watermark_key)  # type: ignore[arg-type]
                    except rnd.Unmarkable:
                        if not level.private_mark:
                            raise  # nothing else would trace this copy: refused
                        ds = _parse(plain)  # a one-bit mask, say: traced by its private mark
                if level.private_mark:
                    rnd.add_private_mark(ds, serial, ctx.watermark_key, ctx.now)  # type: ignore[arg-type]
                fp = io.BytesIO()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds.save_as(fp, enforce_file_format=True)
            except rnd.RenderError:
                raise
            except Exception as exc:  # noqa: BLE001 - malformed values surface late; never echo them
                raise rnd.RenderError(f"object cannot be marked ({exc.__class__.__name__})") from None
            return fp.getvalue()

        return self._issued(marked, principal, decision, level, sop_uid, request_id)

    def rendered_image(self, principal: Principal, decision: Decision, want: DisplayRequest, *, sop_uid: str,
                       plain: Callable[[], bytes], request_id: str = "") -> bytes:
        """A PNG/JPEG of one frame at the caller's level, marked in display values under
        its own serial.  The 8-bit image before the mark is cached sealed (per frame and
        window) like the objects, so a repeated view costs a mark and an encode;
        ``plain()`` gives the unmarked rendered object when it is not cached."""
        level = self.level(decision)
        part = self._partition(principal, decision, level)
        slot = f"{level.cache_name}|display|{want.frame}|{want.window}"
        cached = self.cache.get(sop_uid, slot, part, account=principal.account_id)
        if cached is not None:
            image = _unpack_image(cached)
        else:
            ds = _parse(plain())
            if pixel_keyword(ds) is None:
                raise LookupError("the instance has no pixel data")
            frames = frame_count(ds)
            if frames is None:
                raise rnd.RenderError("the object's NumberOfFrames is malformed: it cannot be rendered")
            if not 1 <= want.frame <= frames:
                raise BadFrame("frame number out of range")
            try:
                image = display.to_display(ds, frame=want.frame, window=want.window)
            except Exception as exc:  # noqa: BLE001 - decoders raise many types; never echo values
                raise rnd.RenderError(f"pixel data cannot be rendered ({exc.__class__.__name__})") from None
            self.cache.put(sop_uid, slot, part, _pack_image(image), account=principal.account_id)
        if not level.watermark:
            return display.encode(image, want.fmt, want.quality)
        return self._issued(  # each strip's thread marks its own rows, then codes them
            lambda serial: display.encode(image, want.fmt, want.quality,
                                          prepare=display.marker(serial, self.keys.watermark)),
            principal, decision, level, sop_uid, request_id)

    def render_object(self, principal: Principal, decision: Decision, stored: bytes, delta: bytes | None,
                      *, study_uid: str, sop_uid: str, request_id: str = "") -> bytes:
        """Render and mark in one call (no cache lookup: the caller has the blobs already)."""
        plain = self.render_plain(principal, decision, stored, delta, sop_uid=sop_uid)
        return self.finish(principal, decision, plain, sop_uid=sop_uid, request_id=request_id)

    def invalidate(self, *, project: str | None = None, account: int | None = None,
                   grant: int | None = None, instance: str | None = None, level: str | None = None,
                   **_: object) -> int:
        """Drop cached renders of a project, read by an account, of a grant's UID space, or
        of one instance (for the access layer's revoke and end paths).  A changed ``level``
        is read again at once (renders of its older definition are keyed by that one, so
        they are never served again and go with eviction)."""
        dropped = 0
        if level is not None:
            self.registry.forget()
            with self._lock:
                self._spaces.clear()  # identifier maps were built under the old rules
        if project is not None:
            dropped += self.cache.invalidate(project=f"project:{project}")
        if grant is not None:
            dropped += self.cache.invalidate(project=f"grant:{grant}")
        if account is not None:
            dropped += self.cache.invalidate(account=account)
            dropped += self.cache.invalidate(project=f"account:{account}")
        if instance is not None:
            dropped += self.cache.invalidate(instance=instance)
        return dropped

    def _issued(self, make: Callable[[int], bytes], principal: Principal, decision: Decision, level: Level,
                sop_uid: str, request_id: str) -> bytes:
        """``make(serial)``, run while the copy's issuance row is committed; returned only
        once that row is durable, so every copy that leaves can be traced."""
        return self.issuances.issued(
            make, account_id=principal.account_id, username=principal.username, role=principal.role,
            instance_uid=sop_uid, level=level.name, request_id=request_id,
            project=decision.project, purpose=decision.purpose)[0]

    @staticmethod
    def _cacheable(level: Level) -> bool:
        return not rnd._is_pass_through(level)  # the stored object itself: nothing to save

    @staticmethod
    def _scope(principal: Principal, decision: Decision) -> str:
        return f"grant:{decision.grant_id}" if decision.grant_id else f"account:{principal.account_id}"

    def _partition(self, principal: Principal, decision: Decision, level: Level) -> str:
        """Which readers may share one cached render: those of one project (re-keyed
        levels), of one UID space (``fresh`` UIDs), or all (the rest)."""
        if level.needs_project:
            return f"project:{decision.project}"
        if level.uids == "fresh":
            return self._scope(principal, decision)
        return ""

    def listing_decision(self, principal: Principal, study_uid: str, memo: dict[str, Decision]) -> Decision:
        """The decision that shapes a query row of a study the SQL filter already admitted.

        Where the policy gives the caller's role one fixed level whatever the basis (service,
        patient, physician, radiologist by default), that level is the answer without asking
        the database again; otherwise (projects, grants: levels per project or grant) the
        study's own decision, once per study per query."""
        found = memo.get(study_uid)
        if found is not None:
            return found
        levels = {r.level for r in self.access.policy.rules(principal.role)}
        # a project-keyed level needs the study's own decision: it names the project
        if len(levels) == 1 and not levels & ({"project", "grant"} | self.registry.project_keyed()):
            found = Decision(True, levels.pop(), "listing", "query", None, None, "")
        else:
            found = self.decision_quietly(principal, study_uid)
        memo[study_uid] = found
        return found

    def render_result(self, principal: Principal, decision: Decision, ds: Dataset) -> Dataset:
        if not decision.allowed:  # cannot happen for rows of visible studies; fail closed
            raise LookupError("a query row outside the caller's grants")
        level = self.level(decision)
        if level.header == "original" or rnd.is_pass_through(level):
            return ds  # a row built for this query alone: nothing to copy or re-key
        return rnd.render_query_result(ds, level, self.context(principal, decision))

    # --- identifier spaces ----------------------------------------------------------------
    def resolve(self, principal: Principal, study: str | None, series: str | None = None,
                sop: str | None = None) -> tuple[str | None, str | None, str | None]:
        """The caller's UIDs -> stored UIDs.  A UID of the caller's space that maps to no
        study they may see is returned unchanged, and then finds nothing (or is refused)."""
        if principal.role not in _OWN_SPACES:
            return study, series, sop
        inward = self._space(principal).inward
        return tuple(None if u is None else inward.get(u, u) for u in (study, series, sop))  # type: ignore[return-value]

    def outward(self, principal: Principal, uid: str) -> str:
        """A stored UID as the caller knows it."""
        if principal.role not in _OWN_SPACES:
            return uid
        return self._space(principal).outward.get(uid, uid)

    def filter_value(self, principal: Principal, keyword: str, value: str | list[str]) -> str | list[str]:
        """A query filter value in stored terms.  Readers with their own identifier space
        filter UIDs and PatientID in their space; other identity attributes cannot be
        filtered on at their level (it would test guesses against hidden values)."""
        if principal.role not in _OWN_SPACES:
            return value
        if keyword in _UID_FILTERS or keyword == "PatientID":
            inward = self._space(principal).inward
            if isinstance(value, list):
                return [inward.get(v, v) for v in value]
            return ",".join(inward.get(v, v) for v in value.split(",")) if "," in value and keyword in _UID_FILTERS \
                else inward.get(value, value)
        if keyword in _IDENTITY_FILTERS:
            raise QueryError(f"{keyword} cannot be used as a filter at your access level")
        return value

    def _space(self, principal: Principal) -> _Space:
        now = time.monotonic()
        with self._lock:
            space = self._spaces.get(principal.account_id)
        if space is not None and now - space.built < _MAP_TTL:
            return space
        space = self._build_space(principal)
        with self._lock:
            if len(self._spaces) > 256:
                self._spaces.clear()
            self._spaces[principal.account_id] = space
        return space

    def _build_space(self, principal: Principal) -> _Space:
        stmt = (select(Study.study_uid, Series.series_uid, Instance.sop_uid, Patient.patient_id)
                .join(Patient, Patient.pk == Study.patient_pk)
                .join(Series, Series.study_pk == Study.pk)
                .join(Instance, Instance.series_pk == Series.pk)
                .where(self.access.visible_studies(principal)))
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        inward: dict[str, str] = {}
        outward: dict[str, str] = {}
        mappers: dict[str, Callable[[str], str]] = {}
        pseudonyms: dict[str, Callable[[str], str]] = {}
        for study, series, sop, patient in rows:
            if study not in mappers:
                decision = self.decision_quietly(principal, study)
                if not decision.allowed:
                    mappers[study] = lambda uid: ""
                    continue
                mappers[study] = self._uid_map(principal, decision)
                pseudonyms[study] = self._pseudonym_map(principal, decision)
            m = mappers[study]
            for uid in (study, series, sop):
                seen = m(uid)
                if seen:
                    inward[seen], outward[uid] = uid, seen
            p = pseudonyms.get(study)
            if p is not None:
                inward[p(patient)] = patient
        return _Space(time.monotonic(), inward, outward)

    def _pseudonym_map(self, principal: Principal, decision: Decision) -> Callable[[str], str] | None:
        level = self.level(decision)
        if level.uids in ("stored", "original"):
            return None
        return rnd.pseudonym_mapper(level, self.context(principal, decision))


def _parse(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data))


def _process_cache_dir(root: Path) -> Path:
    """``root/render-<pid>``, after removing the folders of processes that are gone (their
    sealed entries are useless once their process, which knew their names, has ended)."""
    import shutil

    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    for old in root.glob("render-*"):
        pid = old.name.removeprefix("render-")
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass  # alive, another user's
    return root / f"render-{os.getpid()}"


def _pack_image(image) -> bytes:  # noqa: ANN001 - an 8-bit numpy image
    """An 8-bit image as bytes: rows, columns, channels (4 bytes each), then the pixels."""
    import numpy as np

    rows, cols = image.shape[:2]
    channels = image.shape[2] if image.ndim == 3 else 0
    head = np.array([rows, cols, channels], dtype="<u4").tobytes()
    return head + np.ascontiguousarray(image, dtype=np.uint8).tobytes()


def _unpack_image(data: bytes):  # noqa: ANN202
    import numpy as np

    rows, cols, channels = (int(v) for v in np.frombuffer(data[:12], dtype="<u4"))
    shape = (rows, cols, channels) if channels else (rows, cols)
    return np.frombuffer(data, dtype=np.uint8, offset=12).reshape(shape)  # no copy
