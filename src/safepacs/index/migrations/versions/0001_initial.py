"""The first schema: patients, identities, studies, series, instances, keys, tokens.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patients",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("patient_id", sa.String(64), nullable=False, unique=True),
        sa.Column("patient_name", sa.String(256), nullable=False),
        sa.Column("birth_date", sa.String(8), nullable=False),
        sa.Column("sex", sa.String(16), nullable=False),
    )
    op.create_table(
        "identities",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("patient_pk", sa.Integer, sa.ForeignKey("patients.pk"), nullable=False, index=True),
        sa.Column("id_hash", sa.String(64), nullable=False, index=True),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("patient_pk", "entry_hash"),
    )
    op.create_table(
        "studies",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("study_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("patient_pk", sa.Integer, sa.ForeignKey("patients.pk"), nullable=False, index=True),
        sa.Column("study_date", sa.String(8), nullable=False, index=True),
        sa.Column("study_time", sa.String(16), nullable=False),
        sa.Column("accession_number", sa.String(64), nullable=False, index=True),
        sa.Column("accession_hash", sa.String(64), nullable=True, index=True),
        sa.Column("study_id", sa.String(64), nullable=False),
        sa.Column("study_description", sa.String(1024), nullable=False),
        sa.Column("referring_physician_name", sa.String(256), nullable=False),
        sa.Column("modalities", sa.String(256), nullable=False),
        sa.Column("num_series", sa.Integer, nullable=False),
        sa.Column("num_instances", sa.Integer, nullable=False),
    )
    op.create_table(
        "series",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("series_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("study_pk", sa.Integer, sa.ForeignKey("studies.pk"), nullable=False, index=True),
        sa.Column("modality", sa.String(16), nullable=False, index=True),
        sa.Column("series_number", sa.Integer, nullable=True),
        sa.Column("series_description", sa.String(1024), nullable=False),
        sa.Column("num_instances", sa.Integer, nullable=False),
    )
    op.create_table(
        "instances",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("sop_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("series_pk", sa.Integer, sa.ForeignKey("series.pk"), nullable=False, index=True),
        sa.Column("sop_class_uid", sa.String(64), nullable=False, index=True),
        sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
        sa.Column("instance_number", sa.Integer, nullable=True),
        sa.Column("rows", sa.Integer, nullable=True),
        sa.Column("columns", sa.Integer, nullable=True),
        sa.Column("bits_allocated", sa.Integer, nullable=True),
        sa.Column("number_of_frames", sa.Integer, nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("original_uid_hash", sa.String(64), nullable=False),
        sa.Column("object_blob", sa.String(64), nullable=False),
        sa.Column("delta_blob", sa.String(64), nullable=False),
        sa.Column("stored_size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "data_keys",
        sa.Column("study_uid", sa.String(64), primary_key=True),
        sa.Column("wrapped", sa.LargeBinary, nullable=False),
        sa.Column("kek_id", sa.String(32), nullable=False),
    )
    op.create_table(
        "site_keys",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("wrapped", sa.LargeBinary, nullable=False),
        sa.Column("kek_id", sa.String(32), nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("can_see_identity", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("tokens", "site_keys", "data_keys", "instances", "series", "studies", "identities", "patients"):
        op.drop_table(table)
