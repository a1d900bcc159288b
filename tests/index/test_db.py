"""Schema migrations run at create/open; an unknown revision is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from safepacs.index import db


def test_upgrade_creates_every_table_and_reaches_head(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'i.sqlite'}")
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {"patients", "identities", "studies", "series", "instances", "data_keys", "site_keys", "tokens"} <= tables
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_empty_database_is_not_an_archive(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'i.sqlite'}")
    with pytest.raises(db.DatabaseError, match="no safepacs schema"):
        db.ensure_schema(engine)


def test_unknown_schema_revision_is_refused(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'i.sqlite'}")
    db.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('future9')"))
    with pytest.raises(db.DatabaseError, match="unknown to this safepacs"):
        db.ensure_schema(engine)


def test_postgresql_urls_use_psycopg3():
    assert db.normalise_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    with pytest.raises(db.DatabaseError):
        db.make_engine("mysql://x")


def test_migrations_and_models_describe_the_same_schema(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from safepacs.index.models import Base

    engine = db.make_engine(f"sqlite:///{tmp_path / 'i.sqlite'}")
    db.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
