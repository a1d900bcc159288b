"""Tables of the audit trail.

``audit_entries`` and ``audit_heads`` are the log itself; ``patient`` and ``study_uid`` are
copies of fields inside the entry kept for lookup (``verify`` checks they still match).
``audit_nodes`` caches perfect-subtree hashes (2**8 leaves and up) so proofs cost a few
lookups; it is derived data, and a wrong cache only yields proofs that fail to verify.
No code path deletes or updates an entry or a head.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from safepacs.index.models import Base


class AuditEntry(Base):
    __tablename__ = "audit_entries"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry: Mapped[bytes] = mapped_column(LargeBinary)  # canonical JSON of the AuditEvent
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary)
    patient: Mapped[str] = mapped_column(String(64), default="", index=True)
    study_uid: Mapped[str] = mapped_column(String(64), default="", index=True)


class AuditHead(Base):
    """A signed tree head: Ed25519 over :func:`safepacs.audit.heads.message`."""

    __tablename__ = "audit_heads"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary)
    timestamp: Mapped[int] = mapped_column(BigInteger)  # milliseconds since the epoch, UTC
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(16))


class AuditNode(Base):
    __tablename__ = "audit_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class AuditAppeal(Base):
    """A patient's appeal against one line of their access log."""

    __tablename__ = "audit_appeals"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient: Mapped[str] = mapped_column(String(64), index=True)  # pseudonym
    entry_idx: Mapped[int] = mapped_column(BigInteger)
    statement: Mapped[str] = mapped_column(Text, default="")  # the patient's own words
    proof: Mapped[str] = mapped_column(Text)  # JSON: inclusion proof and the signed head
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    note: Mapped[str] = mapped_column(Text, default="")  # the auditor's answer
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class AuditAlert(Base):
    """An anomaly found by a rule; the events are named by their log index."""

    __tablename__ = "audit_alerts"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    user: Mapped[str] = mapped_column(String(128), default="")
    patient: Mapped[str] = mapped_column(String(64), default="")
    summary: Mapped[str] = mapped_column(String(512), default="")
    events: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of the events' JSON
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
