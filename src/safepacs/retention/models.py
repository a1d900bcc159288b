"""Tables of retention (holds, per-study facts, destruction certificates) and of sealed
split storage (custodians, sealed studies and their encrypted key shares).

No value here identifies a patient: studies by de-identified UID, patients by pseudonym.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from safepacs.index.models import Base


class LegalHold(Base):
    """A legal hold freezes destruction of one study or of every study of one patient."""

    __tablename__ = "retention_holds"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)  # pseudonym
    reason: Mapped[str] = mapped_column(String(256), default="")  # case reference, no PHI
    placed_by: Mapped[str] = mapped_column(String(128), default="")
    placed_at: Mapped[datetime] = mapped_column(DateTime)
    released_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class StudyRetention(Base):
    """Facts about a study the index does not hold: its legal basis and last access."""

    __tablename__ = "retention_studies"

    study_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    legal_basis: Mapped[str] = mapped_column(String(64), default="")
    last_access: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class DestructionCertificate(Base):
    """A signed record that a study was destroyed (also in the audit trail)."""

    __tablename__ = "destruction_certificates"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    certificate: Mapped[str] = mapped_column(Text)  # canonical JSON
    signature: Mapped[str] = mapped_column(String(128))  # Ed25519, base64
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Custodian(Base):
    """A named key custodian: X25519 public key, private key sealed under a passphrase."""

    __tablename__ = "custodians"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    protected_private: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class SealedStudy(Base):
    """A study whose data key exists only as custodian shares (no KEK-wrapped copy)."""

    __tablename__ = "sealed_studies"

    study_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    k: Mapped[int] = mapped_column(Integer)
    m: Mapped[int] = mapped_column(Integer)
    key_fingerprint: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column(DateTime)


class SealedShare(Base):
    """One Shamir share of a sealed study's key, encrypted to one custodian."""

    __tablename__ = "sealed_shares"
    __table_args__ = (UniqueConstraint("study_uid", "custodian"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    custodian: Mapped[str] = mapped_column(String(64))
    x: Mapped[int] = mapped_column(Integer)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
