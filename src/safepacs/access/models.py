"""Tables of the access core (migration 0002).  Secrets are stored as hashes or sealed:
passwords as Argon2id hashes, refresh and API tokens as SHA-256, TOTP secrets AES-GCM sealed.
Patients appear only by pseudonym (``Patient.patient_id``), studies by de-identified UID."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from safepacs.access.principal import ROLES
from safepacs.index.models import Base

_ROLE_CHECK = "role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")"


class Account(Base):
    """One person or service.  ``role`` is one column: an account cannot hold two roles."""

    __tablename__ = "access_accounts"
    __table_args__ = (CheckConstraint(_ROLE_CHECK, name="ck_access_accounts_role"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(256), default="")
    totp_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    totp_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    patient_pseudonym: Mapped[str | None] = mapped_column(String(64), nullable=True)
    oidc_subject: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)


class RefreshToken(Base):
    """One refresh token of a login session ("family").  Used once; a reuse revokes the family."""

    __tablename__ = "access_refresh_tokens"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_pk: Mapped[int] = mapped_column(ForeignKey("access_accounts.pk"), index=True)
    family: Mapped[str] = mapped_column(String(32), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class RevokedSession(Base):
    """A session family logged out or revoked: its access tokens stop working at once."""

    __tablename__ = "access_revoked_sessions"

    family: Mapped[str] = mapped_column(String(32), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(DateTime)


class ApiToken(Base):
    """A long-lived token of a ``service`` account; only its SHA-256 is kept."""

    __tablename__ = "access_api_tokens"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_pk: Mapped[int] = mapped_column(ForeignKey("access_accounts.pk"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class CareRelationship(Base):
    """A clinician treats a patient (by pseudonym) from ``starts_at`` until ``ends_at``."""

    __tablename__ = "access_care"
    __table_args__ = (Index("ix_access_care_account_patient", "account_pk", "patient_id"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_pk: Mapped[int] = mapped_column(ForeignKey("access_accounts.pk"))
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    starts_at: Mapped[datetime] = mapped_column(DateTime)
    ends_at: Mapped[datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Project(Base):
    """An approved research project: purpose, masking level and an expiry."""

    __tablename__ = "access_projects"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(256))
    level: Mapped[str] = mapped_column(String(32))  # built-in or site level (access.levels checks)
    starts_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ProjectMember(Base):
    __tablename__ = "access_project_members"
    __table_args__ = (UniqueConstraint("project_pk", "account_pk"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_pk: Mapped[int] = mapped_column(ForeignKey("access_projects.pk"))
    account_pk: Mapped[int] = mapped_column(ForeignKey("access_accounts.pk"), index=True)


class CohortEntry(Base):
    """One study (de-identified UID) or one patient (pseudonym) in a project's cohort."""

    __tablename__ = "access_cohort"
    __table_args__ = (
        CheckConstraint(
            "(study_uid IS NULL) <> (patient_id IS NULL)", name="ck_access_cohort_one_target"
        ),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_pk: Mapped[int] = mapped_column(ForeignKey("access_projects.pk"), index=True)
    study_uid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class Grant(Base):
    """A time-boxed grant: named studies for a third party, or all studies (de-identified)
    for a service account."""

    __tablename__ = "access_grants"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_pk: Mapped[int] = mapped_column(ForeignKey("access_accounts.pk"), index=True)
    level: Mapped[str] = mapped_column(String(32))  # built-in or site level (access.levels checks)
    all_studies: Mapped[bool] = mapped_column(Boolean, default=False)
    starts_at: Mapped[datetime] = mapped_column(DateTime)
    ends_at: Mapped[datetime] = mapped_column(DateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class GrantStudy(Base):
    __tablename__ = "access_grant_studies"
    __table_args__ = (UniqueConstraint("grant_pk", "study_uid"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    grant_pk: Mapped[int] = mapped_column(ForeignKey("access_grants.pk"))
    study_uid: Mapped[str] = mapped_column(String(64), index=True)


class BreakGlass(Base):
    """An emergency access to one patient, time-boxed and queued for review."""

    __tablename__ = "access_break_glass"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_pk: Mapped[int] = mapped_column(ForeignKey("access_accounts.pk"), index=True)
    patient_id: Mapped[str] = mapped_column(String(64))
    reason_code: Mapped[str] = mapped_column(String(64))
    justification: Mapped[str] = mapped_column(String(2000))  # stored, never logged
    starts_at: Mapped[datetime] = mapped_column(DateTime)
    ends_at: Mapped[datetime] = mapped_column(DateTime)
    reviewed: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    reviewer: Mapped[str | None] = mapped_column(String(64), nullable=True)
    review_outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Approval(Base):
    """A request for a dangerous operation; proceeds only once ``status == "approved"``."""

    __tablename__ = "access_approvals"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    operation: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128))  # de-identified UID or project code
    requested_by: Mapped[int] = mapped_column(ForeignKey("access_accounts.pk"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class ApprovalVote(Base):
    __tablename__ = "access_approval_votes"
    __table_args__ = (UniqueConstraint("approval_pk", "account_pk"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    approval_pk: Mapped[int] = mapped_column(ForeignKey("access_approvals.pk"))
    account_pk: Mapped[int] = mapped_column(ForeignKey("access_accounts.pk"))
    role: Mapped[str] = mapped_column(String(32))
    approve: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(DateTime)


class LoginAttempt(Base):
    """A failed login, kept for the per-address rate limit (no password, no secret)."""

    __tablename__ = "access_login_attempts"
    __table_args__ = (Index("ix_access_login_attempts_address_at", "address", "at"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime)


class Profile(Base):
    """What the anomaly rules know of a reader (migration 0006): their family name and
    address only as keyed hashes, and their own patient pseudonym if they are also one."""

    __tablename__ = "access_profiles"

    account_pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # an Account.pk
    family_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    address_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    own_patient: Mapped[str | None] = mapped_column(String(64), nullable=True)
    department: Mapped[str | None] = mapped_column(String(128), nullable=True)  # shown to patients
    updated_by: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime)
