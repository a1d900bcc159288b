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
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset
from sqlalchemy import Engine, select

from safepacs.access.principal import Decision, Principal
from safepacs.index.models import Instance, Patient, Series, Study
from safepacs.render import render as rnd
from safepacs.render.issuance import Issuances
from safepacs.render.keys import RenderKeys
from safepacs.render.levels import Level, load_levels

#: roles whose identifiers differ from the stored ones
_OWN_SPACES = ("researcher", "third_party")
#: roles allowed to match identity attributes against original values (all of them read at
#: the identified level; the results are still limited to studies they may see)
_IDENTITY_ROLES = ("physician", "radiologist", "patient")
_IDENTITY_FILTERS = ("PatientID", "PatientName", "AccessionNumber", "IssuerOfPatientID")
_UID_FILTERS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_MAP_TTL = 30.0


@dataclass
class _Space:
    built: float
    inward: dict[str, str]  # reader's identifier -> stored
    outward: dict[str, str]  # stored -> reader's identifier


class Masking:
    def __init__(self, access: Any, engine: Engine, keys_dir: Path, *, audit: Any,
                 levels_file: Path | None = None) -> None:
        self.access = access
        self._engine = engine
        self.keys = RenderKeys.load(keys_dir)
        self.levels: dict[str, Level] = load_levels(levels_file)
        self.issuances = Issuances(engine, audit=audit)
        self._spaces: dict[int, _Space] = {}
        self._lock = threading.Lock()

    # --- decisions ------------------------------------------------------------------------
    def decision_quietly(self, principal: Principal, study_uid: str) -> Decision:
        """The read decision without an audit event: used to shape results the caller was
        already audited for (a query's rows, identifier maps)."""
        return self.access.decide(principal, study_uid, action="read", audit=False)

    def level(self, decision: Decision) -> Level:
        found = self.levels.get(decision.level or "")
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
        scope = f"grant:{decision.grant_id}" if decision.grant_id else f"account:{principal.account_id}"
        salt = hmac.new(self.keys.cache, b"uid space\x00" + scope.encode(), hashlib.sha256).digest()
        return rnd.RenderContext(project_key=project, serial=serial, watermark_key=self.keys.watermark,
                                 request_salt=salt)

    def _uid_map(self, principal: Principal, decision: Decision) -> Callable[[str], str]:
        level = self.level(decision)
        mapper = rnd.uid_mapper(level, self.context(principal, decision))
        return mapper or (lambda uid: uid)

    # --- rendering ------------------------------------------------------------------------
    def render_object(self, principal: Principal, decision: Decision, stored: bytes, delta: bytes | None,
                      *, study_uid: str, sop_uid: str, request_id: str = "") -> bytes:
        level = self.level(decision)
        serial = None
        if level.watermark or level.private_mark:
            serial = self.issuances.issue(
                account_id=principal.account_id, username=principal.username, role=principal.role,
                instance_uid=sop_uid, level=level.name, request_id=request_id,
                project=decision.project, purpose=decision.purpose)
        return rnd.render_instance(stored, delta, level, self.context(principal, decision, serial=serial))

    def render_result(self, principal: Principal, decision: Decision, ds: Dataset) -> Dataset:
        if not decision.allowed:  # cannot happen for rows of visible studies; fail closed
            raise LookupError("a query row outside the caller's grants")
        return rnd.render_query_result(ds, self.level(decision), self.context(principal, decision))

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
            raise ValueError(f"{keyword} cannot be used as a filter at your access level")
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
