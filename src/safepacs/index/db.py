"""Database engine setup and schema migrations (run programmatically, never by hand).

SQLite (default) runs in WAL mode with ``synchronous=FULL``: a committed transaction is on
disk when ``commit`` returns, which the archive's crash-safety argument relies on.
PostgreSQL is reached through psycopg 3 (``postgresql://`` URLs are mapped to it).
"""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from safepacs.errors import SafepacsError


class DatabaseError(SafepacsError):
    """The index database cannot be reached or has an unexpected schema."""


def normalise_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, writer: bool = False) -> Engine:
    """An engine for ``url``.  ``writer``: for SQLite, transactions start with ``BEGIN
    IMMEDIATE``, so a read-then-write transaction waits for the write lock up front instead
    of failing when another process wrote in between (SQLITE_BUSY on lock upgrade)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(  # parameters can be original identifiers: never in logs/errors
            url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            if writer:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves

        if writer:

            @event.listens_for(engine, "begin")
            def _begin(conn) -> None:  # type: ignore[no-untyped-def]
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql+psycopg"):
        return create_engine(
            url, pool_pre_ping=True, pool_size=8, max_overflow=8, hide_parameters=True
        )
    raise DatabaseError("database URL must be sqlite:///PATH or postgresql://...")


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("safepacs.index") / "migrations"))
    return cfg


def head_revision() -> str:
    """The newest revisions, joined by "+": each feature's tables hang off the initial
    schema as their own branch, so features migrate independently of each other."""
    script = ScriptDirectory.from_config(_config())
    # a revision another one depends on (``depends_on``) leaves the version table when that
    # one is applied, as an ancestor would: it is no head of a migrated database
    needed = {dep for rev in script.walk_revisions() for dep in _names(rev.dependencies)}
    heads = [h for h in script.get_heads() if h not in needed]
    assert heads
    return "+".join(sorted(heads))


def _names(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value or ())


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return "+".join(sorted(heads)) if heads else None


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision shipped with this version."""
    cfg = _config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot migrate the index database ({exc.__class__.__name__})") from None


def ensure_schema(engine: Engine) -> None:
    """At open: upgrade an older schema, refuse one this version does not know."""
    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot open the index database ({exc.__class__.__name__})") from None
    if current is None:
        raise DatabaseError("the index database has no safepacs schema (wrong --database-url?)")
    script = ScriptDirectory.from_config(_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if not set(current.split("+")) <= known:
        raise DatabaseError(
            f"the index database is at schema revision {current}, unknown to this safepacs "
            "version (newer?); upgrade safepacs"
        )
    if current != head_revision():
        upgrade(engine)
