"""Retention and sealed split storage: holds, per-study retention facts, destruction
certificates, custodians, sealed studies and their key shares.

Revision ID: 0005
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retention_holds",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("study_uid", sa.String(64), nullable=True, index=True),
        sa.Column("patient_id", sa.String(64), nullable=True, index=True),
        sa.Column("reason", sa.String(256), nullable=False),
        sa.Column("placed_by", sa.String(128), nullable=False),
        sa.Column("placed_at", sa.DateTime, nullable=False),
        sa.Column("released_at", sa.DateTime, nullable=True),
        sa.Column("released_by", sa.String(128), nullable=True),
    )
    op.create_table(
        "retention_studies",
        sa.Column("study_uid", sa.String(64), primary_key=True),
        sa.Column("legal_basis", sa.String(64), nullable=False),
        sa.Column("last_access", sa.DateTime, nullable=True),
    )
    op.create_table(
        "destruction_certificates",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("study_uid", sa.String(64), nullable=False, index=True),
        sa.Column("certificate", sa.Text, nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "custodians",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("protected_private", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("retired_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "sealed_studies",
        sa.Column("study_uid", sa.String(64), primary_key=True),
        sa.Column("k", sa.Integer, nullable=False),
        sa.Column("m", sa.Integer, nullable=False),
        sa.Column("key_fingerprint", sa.String(64), nullable=False),
        sa.Column("sealed_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "sealed_shares",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("study_uid", sa.String(64), nullable=False, index=True),
        sa.Column("custodian", sa.String(64), nullable=False),
        sa.Column("x", sa.Integer, nullable=False),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("study_uid", "custodian"),
    )


def downgrade() -> None:
    for table in (
        "sealed_shares", "sealed_studies", "custodians", "destruction_certificates",
        "retention_studies", "retention_holds",
    ):
        op.drop_table(table)
