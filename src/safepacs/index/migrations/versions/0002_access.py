"""Access core: accounts, sessions, API tokens, care relationships, projects, grants,
break-glass, approvals, login attempts.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ROLES = ("system_admin", "security_admin", "security_auditor",
          "physician", "radiologist", "researcher", "third_party", "patient", "service")
_LEVELS = ("identified", "pseudonymised", "anonymised", "deidentified")
_ROLE_CHECK = "role IN (" + ", ".join(f"'{r}'" for r in _ROLES) + ")"
_LEVEL_CHECK = "level IN (" + ", ".join(f"'{lv}'" for lv in _LEVELS) + ")"


def _account_fk(index: bool = True) -> sa.Column:
    return sa.Column("account_pk", sa.Integer, sa.ForeignKey("access_accounts.pk"),
                     nullable=False, index=index)


def upgrade() -> None:
    op.create_table(
        "access_accounts",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("totp_sealed", sa.LargeBinary, nullable=True),
        sa.Column("totp_confirmed", sa.Boolean, nullable=False),
        sa.Column("totp_last_step", sa.Integer, nullable=False),
        sa.Column("must_change_password", sa.Boolean, nullable=False),
        sa.Column("failed_count", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.DateTime, nullable=True),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("patient_pseudonym", sa.String(64), nullable=True),
        sa.Column("oidc_subject", sa.String(255), nullable=True, unique=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.CheckConstraint(_ROLE_CHECK, name="ck_access_accounts_role"),
    )
    op.create_table(
        "access_refresh_tokens",
        sa.Column("pk", sa.Integer, primary_key=True),
        _account_fk(),
        sa.Column("family", sa.String(32), nullable=False, index=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("used", sa.Boolean, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "access_revoked_sessions",
        sa.Column("family", sa.String(32), primary_key=True),
        sa.Column("revoked_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "access_api_tokens",
        sa.Column("pk", sa.Integer, primary_key=True),
        _account_fk(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "access_care",
        sa.Column("pk", sa.Integer, primary_key=True),
        _account_fk(index=False),
        sa.Column("patient_id", sa.String(64), nullable=False, index=True),
        sa.Column("starts_at", sa.DateTime, nullable=False),
        sa.Column("ends_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Index("ix_access_care_account_patient", "account_pk", "patient_id"),
    )
    op.create_table(
        "access_projects",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(64), nullable=False, unique=True),
        sa.Column("purpose", sa.String(256), nullable=False),
        sa.Column("level", sa.String(32), nullable=False),
        sa.Column("starts_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.CheckConstraint(_LEVEL_CHECK, name="ck_access_projects_level"),
    )
    op.create_table(
        "access_project_members",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("project_pk", sa.Integer, sa.ForeignKey("access_projects.pk"), nullable=False),
        _account_fk(),
        sa.UniqueConstraint("project_pk", "account_pk"),
    )
    op.create_table(
        "access_cohort",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("project_pk", sa.Integer, sa.ForeignKey("access_projects.pk"), nullable=False, index=True),
        sa.Column("study_uid", sa.String(64), nullable=True, index=True),
        sa.Column("patient_id", sa.String(64), nullable=True, index=True),
        sa.CheckConstraint("(study_uid IS NULL) <> (patient_id IS NULL)", name="ck_access_cohort_one_target"),
    )
    op.create_table(
        "access_grants",
        sa.Column("pk", sa.Integer, primary_key=True),
        _account_fk(),
        sa.Column("level", sa.String(32), nullable=False),
        sa.Column("all_studies", sa.Boolean, nullable=False),
        sa.Column("starts_at", sa.DateTime, nullable=False),
        sa.Column("ends_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.CheckConstraint(_LEVEL_CHECK, name="ck_access_grants_level"),
    )
    op.create_table(
        "access_grant_studies",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("grant_pk", sa.Integer, sa.ForeignKey("access_grants.pk"), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=False, index=True),
        sa.UniqueConstraint("grant_pk", "study_uid"),
    )
    op.create_table(
        "access_break_glass",
        sa.Column("pk", sa.Integer, primary_key=True),
        _account_fk(),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=False),
        sa.Column("justification", sa.String(2000), nullable=False),
        sa.Column("starts_at", sa.DateTime, nullable=False),
        sa.Column("ends_at", sa.DateTime, nullable=False),
        sa.Column("reviewed", sa.Boolean, nullable=False, index=True),
        sa.Column("reviewer", sa.String(64), nullable=True),
        sa.Column("review_outcome", sa.String(32), nullable=True),
        sa.Column("reviewed_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "access_approvals",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("requested_by", sa.Integer, sa.ForeignKey("access_accounts.pk"), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("decided_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "access_approval_votes",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("approval_pk", sa.Integer, sa.ForeignKey("access_approvals.pk"), nullable=False),
        _account_fk(index=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("approve", sa.Boolean, nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("approval_pk", "account_pk"),
    )
    op.create_table(
        "access_login_attempts",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Index("ix_access_login_attempts_address_at", "address", "at"),
    )


def downgrade() -> None:
    for table in ("access_login_attempts", "access_approval_votes", "access_approvals",
                  "access_break_glass", "access_grant_studies", "access_grants", "access_cohort",
                  "access_project_members", "access_projects", "access_care", "access_api_tokens",
                  "access_revoked_sessions", "access_refresh_tokens", "access_accounts"):
        op.drop_table(table)
