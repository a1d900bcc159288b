"""Access profiles: keyed hashes of a reader's family name and address, and their own
patient pseudonym, for the anomaly rules (same family or address, self-access).

Revision ID: 0006
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_profiles",
        # access_accounts.pk; no foreign key: branches of 0001 run in any order (as 0004 does)
        sa.Column("account_pk", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("family_hash", sa.String(64), nullable=True),
        sa.Column("address_hash", sa.String(64), nullable=True),
        sa.Column("own_patient", sa.String(64), nullable=True),
        sa.Column("department", sa.String(128), nullable=True),
        sa.Column("updated_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("access_profiles")
