"""Errors people can act on.

Every message names the file and the problem, never a value from inside the file:
messages end up in reports, logs and HTTP bodies, where PHI must not go.
"""

from __future__ import annotations


class SafepacsError(Exception):
    """Base class: ``str(err)`` is safe to show to a user and to log."""


class InvalidDicom(SafepacsError):
    """The input is not a DICOM object we can process safely."""


class MediaIndex(InvalidDicom):
    """A DICOMDIR (Media Storage Directory): an index of a medium's files, no image.  It
    lists patients' names and IDs, so it is never copied; whatever its file name."""


#: what reports say of a DICOMDIR (skipped, not rejected: a CD's or DVD's index is expected)
MEDIA_INDEX_REASON = "DICOMDIR media index: not an image, not copied"


class RejectedFile(SafepacsError):
    """The input is valid DICOM but policy refuses to process it (e.g. burned-in text risk)."""


class KeyError_(SafepacsError):
    """A key file is missing, unreadable or malformed."""


class DeltaError(SafepacsError):
    """An identity delta cannot be decrypted or does not belong to this object."""


def io_reason(exc: OSError) -> str:
    """A report's reason for a failed read or write: the system's words ("No space left on
    device"), never the path, which may carry a patient's name."""
    return f"I/O error ({exc.strerror or exc.__class__.__name__})"
