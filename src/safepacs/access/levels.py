"""The level registry: the built-in access levels plus the site's own, which the security
administrator defines, changes and deletes as data.

Site levels live in the index database (``access_levels``, every change in
``access_level_changes``) rather than in a file: every serve process and the CLI see the
same definitions, a change is one transaction (no half-written file), it survives restarts
and backups with the grants that name it, and its history sits beside the grants it
explains.  Readers of the render path keep a per-process copy for at most ``ttl`` seconds
(the process that made a change sees it at once); a rendered copy is cached under the
definition's digest, so no copy made under an old definition is ever served again.

Fail closed everywhere: an unknown name is refused when a project or grant is made, a
stored definition this version cannot parse is treated as absent (its readers are
refused), and a level whose header is ``original`` reveals identity: it is treated exactly
like ``identified`` (never a project's level, exported only with approval, always
watermarked).  A level that re-keys per research project (``pseudonymised``, or a site level
with ``project`` UIDs or dates) is only ever a project's: a grant at one is refused when it is
made, and one stored anyway (by an older version) opens nothing."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from safepacs.access.context import Context
from safepacs.access.errors import AccessError, Conflict, NotFound
from safepacs.access.guard import require
from safepacs.access.level_models import LevelChange, SiteLevel
from safepacs.access.models import Grant, Project
from safepacs.access.principal import Principal
from safepacs.audit.events import CREATE, DELETE, SECURITY_ALERT, UPDATE
from safepacs.render.levels import BUILT_IN, Level, LevelError, builtin_levels, parse_level

log = logging.getLogger(__name__)

#: the largest definition accepted (a keep list of every keyword of the standard fits)
MAX_DEFINITION = 64 << 10
#: seconds a serve process may keep using its copy of the site levels
TTL = 1.0


def reveals_identity(level: Level) -> bool:
    """Whether readers at ``level`` see the original header (and so who the patient is)."""
    return level.header == "original"


def canonical(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_definition(name: str, doc: object) -> tuple[Level, str]:
    """A site level's definition, validated: (level, canonical JSON).  Messages name the
    rule that failed, never a value."""
    if name in BUILT_IN:
        raise AccessError("built-in levels cannot be redefined; choose another name")
    try:
        text = canonical(doc)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AccessError("a level definition is a JSON object") from None
    if len(text) > MAX_DEFINITION:  # before parsing: a huge keep list costs nothing then
        raise AccessError(f"a level definition may not be larger than {MAX_DEFINITION} bytes")
    try:
        level = parse_level(name, doc)
    except LevelError as exc:
        raise AccessError(str(exc)) from None
    if reveals_identity(level) and not level.watermark:
        raise AccessError(f"level {name}: a level that reveals identity must carry the watermark")
    return level, text


def _load(name: str, text: str, version: int, sha: str) -> Level | None:
    try:
        level, _ = check_definition(name, json.loads(text))
    except (AccessError, ValueError) as exc:  # stored by another version: treated as absent
        log.error("site level %s cannot be used (%s)", name, type(exc).__name__)
        return None
    return replace(level, version=f"{version}:{sha[:16]}")


def site_levels(conn: Connection | Session) -> dict[str, Level]:
    """Every usable site level, as stored now."""
    rows = conn.execute(select(SiteLevel.name, SiteLevel.definition, SiteLevel.version, SiteLevel.digest)).all()
    found = (_load(*row) for row in rows)
    return {lv.name: lv for lv in found if lv is not None}


def find(conn: Connection | Session, name: str) -> Level | None:
    """The level called ``name`` as the database says now (built-in or site), or None."""
    if name in BUILT_IN:
        return builtin_levels()[name]
    row = conn.execute(select(SiteLevel.name, SiteLevel.definition, SiteLevel.version, SiteLevel.digest)
                       .where(SiteLevel.name == name)).first()
    return _load(*row) if row is not None else None


def grantable(conn: Connection | Session, name: str, *, project: bool) -> Level:
    """The level a new project (``project``) or grant may name; :class:`AccessError` when
    it is unknown or not for that kind of access."""
    level = find(conn, name) if isinstance(name, str) else None
    if level is None:
        raise AccessError("unknown access level")
    if project and reveals_identity(level):
        raise AccessError("a project's level may not reveal identity (that needs a care relationship)")
    if not project and level.needs_project:  # built-in (pseudonymised) or site level alike
        raise AccessError(project_only(name))
    return level


def project_only(name: str) -> str:
    """Why a level that re-keys per research project cannot be granted outside one."""
    return (f"level {name!r} needs a research project: it re-keys pseudonyms, UIDs or dates per "
            "project, so it can only be a project's level (create a project at this level and "
            "add the reader as a member)")


def exposes_identity(engine: Engine, name: str | None) -> bool:
    """Whether the level called ``name`` reveals identity; unknown names do (fail closed)."""
    if name in BUILT_IN:
        return name == "identified"
    with engine.connect() as conn:
        level = find(conn, name or "")
    return level is None or reveals_identity(level)


class LevelRegistry:
    """Built-in and site levels for the render path: one query per ``ttl`` seconds at most."""

    def __init__(self, engine: Engine, *, ttl: float = TTL) -> None:
        self._engine = engine
        self._ttl = ttl
        self._levels: dict[str, Level] = dict(builtin_levels())
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def all(self) -> dict[str, Level]:
        if time.monotonic() - self._read_at >= self._ttl:
            self.refresh(only_if_stale=True)
        return self._levels

    def get(self, name: str) -> Level | None:
        return self.all().get(name)

    def refresh(self, *, only_if_stale: bool = False) -> None:
        """Read the site levels now (after a change, or when the copy is older than ``ttl``;
        ``only_if_stale``: unless another thread just did)."""
        with self._lock:
            if only_if_stale and time.monotonic() - self._read_at < self._ttl:
                return
            with self._engine.connect() as conn:
                site = site_levels(conn)
            self._levels = {**builtin_levels(), **site}
            self._read_at = time.monotonic()

    def project_keyed(self) -> frozenset[str]:
        """The levels that re-key per research project: readable only through a project
        (a grant or a fixed policy level has no project key to re-key with)."""
        return frozenset(name for name, level in self.all().items() if level.needs_project)

    def forget(self, **_: object) -> None:
        """An access listener: any change may concern levels, so read them again next time."""
        self._read_at = float("-inf")


def _in_use(s: Session, name: str, now: Any) -> tuple[int, int]:
    """(active or future projects, active or future grants) at level ``name``."""
    projects = s.scalar(select(func.count()).select_from(Project)
                        .where(Project.level == name, Project.expires_at > now)) or 0
    grants = s.scalar(select(func.count()).select_from(Grant)
                      .where(Grant.level == name, Grant.ends_at > now)) or 0
    return projects, grants


class LevelDesk:
    """The security administrator's desk for site levels (``level.manage``).  Levels are
    part of the masking policy, so whoever may read the access policy (``policy.show``: the
    three administrators) may read them and their history.  Every change is versioned and
    audited (name, version and digest: a level holds no PHI)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def list(self, who: Principal) -> list[dict[str, Any]]:
        require(self.ctx, who, "policy.show", route="GET /api/levels")
        out = [{"name": n, "builtin": True, "version": 0, "reveals_identity": reveals_identity(lv),
                "definition": _as_doc(lv)} for n, lv in builtin_levels().items()]
        with Session(self.ctx.engine) as s:
            for row in s.scalars(select(SiteLevel).order_by(SiteLevel.name)):
                doc = json.loads(row.definition)
                out.append({"name": row.name, "builtin": False, "version": row.version,
                            "digest": row.digest, "updated_by": row.updated_by,
                            "updated_at": row.updated_at.isoformat(),
                            "reveals_identity": doc.get("header") == "original", "definition": doc})
        return out

    def history(self, who: Principal, name: str) -> list[dict[str, Any]]:
        require(self.ctx, who, "policy.show", route="GET /api/levels/{name}/history")
        with Session(self.ctx.engine) as s:
            rows = s.scalars(select(LevelChange).where(LevelChange.name == name).order_by(LevelChange.version))
            return [{"version": r.version, "action": r.action, "changed_by": r.changed_by,
                     "changed_at": r.changed_at.isoformat(),
                     "definition": json.loads(r.definition) if r.definition else None,
                     "previous": json.loads(r.previous) if r.previous else None} for r in rows]

    def put(self, who: Principal, name: str, doc: object) -> dict[str, Any]:
        """Create or replace the site level ``name``; takes effect for new requests."""
        route = "PUT /api/levels/{name}"
        require(self.ctx, who, "level.manage", route=route)
        level, text = check_definition(name, doc)
        now = self.ctx.now()
        sha = digest(text)
        try:
            with Session(self.ctx.engine) as s, s.begin():
                row = s.get(SiteLevel, name)
                if row is not None and row.digest == sha:
                    return {"name": name, "version": row.version, "digest": sha, "changed": False}
                projects, grants = _in_use(s, name, now)
                if reveals_identity(level) and (projects or grants) and (
                        row is None or json.loads(row.definition).get("header") != "original"):
                    raise Conflict("level is in use: it cannot start revealing identity (define a new level)")
                if level.needs_project and grants:
                    raise Conflict("level is granted to third parties: it cannot re-key per project")
                version = (s.scalar(select(func.max(LevelChange.version)).where(LevelChange.name == name)) or 0) + 1
                action = "create" if row is None else "replace"
                s.add(LevelChange(name=name, version=version, action=action, definition=text,
                                  previous=row.definition if row is not None else None,
                                  changed_by=who.username, changed_at=now))
                if row is None:
                    s.add(SiteLevel(name=name, definition=text, version=version, digest=sha,
                                    updated_by=who.username, updated_at=now))
                else:
                    row.definition, row.version, row.digest = text, version, sha
                    row.updated_by, row.updated_at = who.username, now
        except IntegrityError:
            raise Conflict("the level was changed at the same time; read it again and retry") from None
        self.ctx.emit(SECURITY_ALERT, CREATE if action == "create" else UPDATE, who=who, route=route,
                      reason=f"site access level {'defined' if action == 'create' else 'changed'}",
                      level=name, detail={"level": name, "version": version, "digest": sha[:16],
                                          "reveals_identity": reveals_identity(level)})
        self.ctx.notify(level=name)
        return {"name": name, "version": version, "digest": sha, "changed": True}

    def delete(self, who: Principal, name: str) -> dict[str, Any]:
        """Delete a site level no active (or future) project or grant uses."""
        route = "DELETE /api/levels/{name}"
        require(self.ctx, who, "level.manage", route=route)
        if name in BUILT_IN:
            raise AccessError("built-in levels cannot be deleted")
        now = self.ctx.now()
        try:
            with Session(self.ctx.engine) as s, s.begin():
                row = s.get(SiteLevel, name)
                if row is None:
                    raise NotFound("no such site level")
                projects, grants = _in_use(s, name, now)
                if projects or grants:
                    raise Conflict(f"level is in use by {projects} project(s) and {grants} grant(s)")
                version = (s.scalar(select(func.max(LevelChange.version)).where(LevelChange.name == name)) or 0) + 1
                s.add(LevelChange(name=name, version=version, action="delete", definition=None,
                                  previous=row.definition, changed_by=who.username, changed_at=now))
                s.delete(row)
        except IntegrityError:
            raise Conflict("the level was changed at the same time; read it again and retry") from None
        self.ctx.emit(SECURITY_ALERT, DELETE, who=who, route=route, reason="site access level deleted",
                      level=name, detail={"level": name, "version": version})
        self.ctx.notify(level=name)
        return {"name": name, "version": version, "deleted": True}


def _as_doc(level: Level) -> dict[str, Any]:
    doc: dict[str, Any] = {"header": level.header, "uids": level.uids, "dates": level.dates,
                           "pixels": level.pixels, "watermark": level.watermark,
                           "private_mark": level.private_mark}
    if level.keep is not None:
        doc["keep"] = list(level.keep)
    if level.empty:
        doc["empty"] = list(level.empty)
    return doc

