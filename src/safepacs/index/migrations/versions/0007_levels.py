"""Site-defined access levels: their current definitions and every change; the level
columns of projects and grants lose their CHECK of the four built-in names (a level name
is checked against the registry when a project or grant is made).

Revision ID: 0007
Revises: 0001 (after 0002, whose tables it alters)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0001"
branch_labels = None
depends_on = "0002"

_BUILT_IN = ("identified", "pseudonymised", "anonymised", "deidentified")
_LEVEL_CHECK = "level IN (" + ", ".join(f"'{lv}'" for lv in _BUILT_IN) + ")"


def upgrade() -> None:
    op.create_table(
        "access_levels",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "access_level_changes",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("definition", sa.Text, nullable=True),
        sa.Column("previous", sa.Text, nullable=True),
        sa.Column("changed_by", sa.String(64), nullable=False),
        sa.Column("changed_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_access_level_changes_name_version", "access_level_changes", ["name", "version"],
                    unique=True)
    for table in ("access_projects", "access_grants"):
        _drop_check(table, f"ck_{table}_level")


def downgrade() -> None:
    for table in ("access_projects", "access_grants"):
        with op.batch_alter_table(table) as batch:
            batch.create_check_constraint(f"ck_{table}_level", sa.text(_LEVEL_CHECK))
    op.drop_index("ix_access_level_changes_name_version", table_name="access_level_changes")
    op.drop_table("access_level_changes")
    op.drop_table("access_levels")


def _drop_check(table: str, name: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.drop_constraint(name, table, type_="check")
        return
    # SQLite cannot drop a constraint: the table is rebuilt (copy, drop, rename), and dropping
    # the old table would trip the foreign keys of rows pointing at it (members, cohort,
    # grant studies) although the copy keeps every key.  Foreign keys can only be switched
    # off outside a transaction (SQLite DDL is not transactional through pysqlite anyway),
    # so: commit, off, rebuild, commit, on, and check every key before going on.
    raw = bind.connection.dbapi_connection
    raw.commit()
    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        with op.batch_alter_table(table, recreate="always") as batch:
            batch.drop_constraint(name, type_="check")
        raw.commit()
    finally:
        raw.execute("PRAGMA foreign_keys = ON")
    if raw.execute("PRAGMA foreign_key_check").fetchall():
        raise RuntimeError(f"{table}: a foreign key broke while rebuilding the table")
