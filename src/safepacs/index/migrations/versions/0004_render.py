"""Rendering: the register of issued (watermarked) copies.

Revision ID: 0004
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "render_issuances",
        sa.Column("serial", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.Integer, nullable=False, index=True),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("issued_at", sa.DateTime, nullable=False, index=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("instance_uid", sa.String(64), nullable=False, index=True),
        sa.Column("level", sa.String(32), nullable=False),
        sa.Column("project", sa.String(64), nullable=True, index=True),
        sa.Column("purpose", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("render_issuances")
