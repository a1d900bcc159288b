"""Archive errors; like every safepacs error, their text is safe to show and log."""

from __future__ import annotations

from safepacs.errors import SafepacsError


class ArchiveError(SafepacsError):
    """Base class of the archive service's errors."""


class NotFound(ArchiveError):
    """No such study, series or instance (by de-identified UID)."""


class Conflict(ArchiveError):
    """An instance with the same SOP Instance UID but different content is already stored."""


class IntegrityError(ArchiveError):
    """Stored ciphertext failed authentication: it was changed or damaged.  Nothing of it
    is returned."""


class Unauthorized(ArchiveError):
    """No valid token."""


class BadFrame(ArchiveError, ValueError):
    """A frame number outside the object's frames (the caller's mistake: 400)."""


class NotAcceptable(ArchiveError):
    """The object is not stored in a transfer syntax the reader asked for (no transcoding)."""
