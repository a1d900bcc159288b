"""DICOM networking (DIMSE) front of the archive."""

from safepacs.dimse.scp import caller_allowed, start

__all__ = ["caller_allowed", "start"]
