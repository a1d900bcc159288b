"""The audit trail: entries, signed tree heads, cached subtree hashes, appeals, alerts.

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("entry", sa.LargeBinary, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
        sa.Column("patient", sa.String(64), nullable=False, index=True),
        sa.Column("study_uid", sa.String(64), nullable=False, index=True),
    )
    op.create_table(
        "audit_heads",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
    )
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_appeals",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("patient", sa.String(64), nullable=False, index=True),
        sa.Column("entry_idx", sa.BigInteger, nullable=False),
        sa.Column("statement", sa.Text, nullable=False),
        sa.Column("proof", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "audit_alerts",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("rule", sa.String(64), nullable=False, index=True),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("user", sa.String(128), nullable=False),
        sa.Column("patient", sa.String(64), nullable=False),
        sa.Column("summary", sa.String(512), nullable=False),
        sa.Column("events", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    # the trail is never dropped by a migration: downgrading past it is refused
    raise RuntimeError("the audit trail cannot be removed by a schema downgrade")
