"""The archive: de-identify at the door, encrypt at rest, index pseudonyms only."""

from safepacs.access.principal import Principal
from safepacs.archive.errors import (
    ArchiveError,
    Conflict,
    IntegrityError,
    NotAcceptable,
    NotFound,
    Unauthorized,
)
from safepacs.archive.service import Archive, InstanceRef, Stored

__all__ = [
    "Archive",
    "ArchiveError",
    "Conflict",
    "InstanceRef",
    "IntegrityError",
    "NotAcceptable",
    "NotFound",
    "Principal",
    "Stored",
    "Unauthorized",
]
