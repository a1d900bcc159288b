"""Migration 0007 on a database that has grants and projects already (SQLite and
PostgreSQL): every row and every foreign key stays, the CHECK of the four built-in level
names goes, and the site level tables arrive."""

from __future__ import annotations

from datetime import datetime

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from safepacs.index import db

NOW = datetime(2026, 1, 1, 12, 0, 0)
ROWS = [
    "INSERT INTO access_accounts (pk, username, role, password_hash, totp_confirmed, totp_last_step, "
    "must_change_password, failed_count, disabled, created_by, created_at) "
    "VALUES (1, 'tp', 'third_party', '', false, 0, false, 0, false, 'x', :n)",
    "INSERT INTO access_grants (pk, account_pk, level, all_studies, starts_at, ends_at, created_by, created_at) "
    "VALUES (1, 1, 'anonymised', false, :n, :n, 'x', :n)",
    "INSERT INTO access_grant_studies (pk, grant_pk, study_uid) VALUES (1, 1, '2.25.1')",
    "INSERT INTO access_projects (pk, code, purpose, level, starts_at, expires_at, created_by, created_at) "
    "VALUES (1, 'P', 'p', 'pseudonymised', :n, :n, 'x', :n)",
    "INSERT INTO access_project_members (pk, project_pk, account_pk) VALUES (1, 1, 1)",
    "INSERT INTO access_cohort (pk, project_pk, study_uid) VALUES (1, 1, '2.25.1')",
]


@pytest.fixture
def engine(database_url, tmp_path):
    engine = db.make_engine(database_url or f"sqlite:///{tmp_path / 'index.sqlite'}")
    yield engine
    engine.dispose()


def _snapshot(conn) -> dict[str, list[tuple]]:
    tables = ("access_grants", "access_grant_studies", "access_projects", "access_project_members",
              "access_cohort")
    return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY pk"))] for t in tables}


def test_upgrade_keeps_grants_and_projects_and_drops_the_level_check(engine):
    cfg = db._config()
    with engine.begin() as conn:  # a database as the access release left it
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    with engine.begin() as conn:
        for sql in ROWS:
            conn.execute(text(sql), {"n": NOW})
        before = _snapshot(conn)
        with pytest.raises(IntegrityError), conn.begin_nested():
            conn.execute(text("UPDATE access_grants SET level = 'teaching' WHERE pk = 1"))
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()
    db.ensure_schema(engine)  # at head: nothing left to do
    with engine.begin() as conn:
        assert _snapshot(conn) == before
        names = {c["name"] for t in ("access_grants", "access_projects")
                 for c in inspect(conn).get_check_constraints(t)}
        assert not {"ck_access_grants_level", "ck_access_projects_level"} & names
        assert {"access_levels", "access_level_changes"} <= set(inspect(conn).get_table_names())
        conn.execute(text("UPDATE access_grants SET level = 'teaching' WHERE pk = 1"))
        conn.execute(text("UPDATE access_projects SET level = 'teaching' WHERE pk = 1"))
    with engine.connect() as conn:  # the rebuilt tables still enforce their foreign keys
        with pytest.raises(IntegrityError), conn.begin():
            conn.execute(text("INSERT INTO access_grant_studies (grant_pk, study_uid) VALUES (99, '2.25.2')"))
        with pytest.raises(IntegrityError), conn.begin():
            conn.execute(text("DELETE FROM access_projects WHERE pk = 1"))
