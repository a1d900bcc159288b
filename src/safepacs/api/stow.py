"""STOW-RS outcome: which failure reason an ingest error gets, and the response dataset.

Reasons are PS3.18 Table 10.5.3-1 / PS3.4 C-STORE statuses; the table is shared with the DIMSE
C-STORE provider so one object gets the same answer on both doors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from safepacs.archive.errors import Conflict
from safepacs.errors import InvalidDicom, RejectedFile

OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
DUPLICATE_CONFLICT = 0x0111
NOT_AUTHORIZED = 0x0124
DIFFERENT_STUDY = 0xC409  # the instance is not of the study named in the URL (as dcm4chee)


def failure_reason(exc: BaseException) -> int:
    """The status for an ingest error.  Unknown errors are processing failures, never success."""
    if isinstance(exc, Conflict):
        return DUPLICATE_CONFLICT
    if isinstance(exc, InvalidDicom):
        return CANNOT_UNDERSTAND
    if isinstance(exc, RejectedFile):
        return NOT_AUTHORIZED
    if isinstance(exc, OSError | MemoryError):
        return OUT_OF_RESOURCES
    return PROCESSING_FAILURE


@dataclass(frozen=True)
class Failure:
    reason: int
    sop_class_uid: str = ""


def status_code(outcomes: list[Any]) -> int:
    """200 all stored, 202 some failed, 409 all failed (PS3.18 10.5.3)."""
    failed = sum(isinstance(o, Failure) for o in outcomes)
    if failed == 0:
        return 200
    return 409 if failed == len(outcomes) else 202


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def response(outcomes: list[Any], base_url: str, study_url: str | None) -> dict[str, Any]:
    """The Store Instances Response Module as DICOM JSON, items in request order."""
    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for o in outcomes:
        if isinstance(o, Failure):
            failed.append({
                "00081150": _ui(o.sop_class_uid),
                "00081155": {"vr": "UI"},
                "00081197": {"vr": "US", "Value": [o.reason]},
            })
        else:
            url = (f"{base_url}/studies/{o.study_uid}/series/{o.series_uid}"
                   f"/instances/{o.sop_instance_uid}")
            stored.append({
                "00081150": _ui(o.sop_class_uid),
                "00081155": _ui(o.sop_instance_uid),
                "00081190": {"vr": "UR", "Value": [url]},
            })
    out: dict[str, Any] = {}
    if study_url:
        out["00081190"] = {"vr": "UR", "Value": [study_url]}
    if failed:
        out["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        out["00081199"] = {"vr": "SQ", "Value": stored}
    return out
