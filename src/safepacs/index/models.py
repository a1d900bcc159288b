"""SQLAlchemy 2 models of the index.

Only de-identified values and pseudonyms are stored in clear columns.  Original identity
lives in :class:`Identity` rows: keyed hashes (to find an exact original PatientID) and an
AES-GCM sealed record (for wildcard name matching by readers allowed to see identity).
Schema changes go through Alembic migrations in ``migrations/versions``; keep both in step.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Patient(Base):
    __tablename__ = "patients"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), unique=True)  # pseudonym
    patient_name: Mapped[str] = mapped_column(String(256), default="")  # de-identified value
    birth_date: Mapped[str] = mapped_column(String(8), default="")
    sex: Mapped[str] = mapped_column(String(16), default="")


class Identity(Base):
    """One original (PatientID, PatientName) seen for a patient, sealed."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("patient_pk", "entry_hash"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.pk"), index=True)
    id_hash: Mapped[str] = mapped_column(String(64), index=True)
    entry_hash: Mapped[str] = mapped_column(String(64))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class Study(Base):
    __tablename__ = "studies"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.pk"), index=True)
    study_date: Mapped[str] = mapped_column(String(8), default="", index=True)
    study_time: Mapped[str] = mapped_column(String(16), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    accession_hash: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    study_id: Mapped[str] = mapped_column(String(64), default="")
    study_description: Mapped[str] = mapped_column(String(1024), default="")
    referring_physician_name: Mapped[str] = mapped_column(String(256), default="")
    modalities: Mapped[str] = mapped_column(String(256), default="|")  # "|CT|MR|"
    num_series: Mapped[int] = mapped_column(Integer, default=0)
    num_instances: Mapped[int] = mapped_column(Integer, default=0)


class Series(Base):
    __tablename__ = "series"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.pk"), index=True)
    modality: Mapped[str] = mapped_column(String(16), default="", index=True)
    series_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    series_description: Mapped[str] = mapped_column(String(1024), default="")
    num_instances: Mapped[int] = mapped_column(Integer, default=0)


class Instance(Base):
    __tablename__ = "instances"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.pk"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64), index=True)
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    columns: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bits_allocated: Mapped[int | None] = mapped_column(Integer, nullable=True)
    number_of_frames: Mapped[int | None] = mapped_column(Integer, nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)  # bytes of the de-identified Part 10 object
    content_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of those bytes
    original_uid_hash: Mapped[str] = mapped_column(String(64))  # keyed hash, never the UID
    object_blob: Mapped[str] = mapped_column(String(64))
    delta_blob: Mapped[str] = mapped_column(String(64))
    stored_size: Mapped[int] = mapped_column(BigInteger)  # ciphertext bytes, both blobs
    created_at: Mapped[datetime] = mapped_column(DateTime)


class DataKey(Base):
    """A study's data key, wrapped by the KEK."""

    __tablename__ = "data_keys"

    study_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(32))


class SiteKey(Base):
    """Site-wide keys (de-identification secret, identity-index key), wrapped by the KEK."""

    __tablename__ = "site_keys"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(32))


class Token(Base):
    """An API token: only its SHA-256 is kept."""

    __tablename__ = "tokens"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    can_see_identity: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)
import safepacs.access.level_models  # noqa: E402,F401
import safepacs.access.models  # noqa: E402,F401
import safepacs.audit.models  # noqa: E402,F401
import safepacs.render.models  # noqa: E402,F401
import safepacs.retention.models  # noqa: E402,F401
