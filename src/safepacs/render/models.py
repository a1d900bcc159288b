"""The register of issued copies: every rendered copy that leaves gets a serial here, and
the watermark carries only that serial, so a leaked image names a row, never a person
directly (the row names the account; the mark alone means nothing without the key)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from safepacs.index.models import Base


class Issuance(Base):
    __tablename__ = "render_issuances"

    serial: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(Integer, index=True)
    username: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    issued_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    request_id: Mapped[str] = mapped_column(String(64), default="")
    instance_uid: Mapped[str] = mapped_column(String(64), index=True)  # de-identified SOP UID
    level: Mapped[str] = mapped_column(String(32))
    project: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    purpose: Mapped[str] = mapped_column(String(32), default="")
