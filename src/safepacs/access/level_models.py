"""Tables of the site-defined access levels (migration 0007).

``access_levels`` holds the current definition of each site level; ``access_level_changes``
every change ever made (who, when, the definition before and after), so a copy rendered
on any day can be explained by the definition in force that day.  Built-in levels are code
data (``render/data/levels.json``) and never appear here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from safepacs.index.models import Base


class SiteLevel(Base):
    __tablename__ = "access_levels"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    definition: Mapped[str] = mapped_column(Text)  # canonical JSON (sorted keys)
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, ... over the name's whole history
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the definition
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class LevelChange(Base):
    __tablename__ = "access_level_changes"
    __table_args__ = (Index("ix_access_level_changes_name_version", "name", "version", unique=True),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(8))  # create | replace | delete
    definition: Mapped[str | None] = mapped_column(Text, nullable=True)  # after (None: deleted)
    previous: Mapped[str | None] = mapped_column(Text, nullable=True)  # before (None: new)
    changed_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(DateTime)
