"""The de-identified values the index keeps, read from an object after the door.

Pure: a dataset in, a dict of checked values cut to their column sizes out.  Values that
cannot be decoded make the object invalid; messages name the attribute, never the value.
"""

from __future__ import annotations

from pydicom import Dataset

from safepacs.errors import InvalidDicom
from safepacs.index import query


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).strip()[:limit]


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def index_values(ds: Dataset) -> dict:
    """The de-identified values the index keeps, checked and cut to their column sizes."""
    try:
        values = {
            "sop_uid": _text(ds, "SOPInstanceUID", 64),
            "study_uid": _text(ds, "StudyInstanceUID", 64),
            "series_uid": _text(ds, "SeriesInstanceUID", 64),
            "sop_class_uid": _text(ds, "SOPClassUID", 64),
            "transfer_syntax_uid": str(ds.file_meta.TransferSyntaxUID),
            "patient_id": _text(ds, "PatientID", 64),
            "patient_name": _text(ds, "PatientName", 256),
            "birth_date": _text(ds, "PatientBirthDate", 8),
            "sex": _text(ds, "PatientSex", 16),
            "study_date": _text(ds, "StudyDate", 8),
            "study_time": _text(ds, "StudyTime", 16),
            "accession_number": _text(ds, "AccessionNumber", 64),
            "study_id": _text(ds, "StudyID", 64),
            "study_description": _text(ds, "StudyDescription", 1024),
            "referring_physician_name": _text(ds, "ReferringPhysicianName", 256),
            "modality": _text(ds, "Modality", 16),
            "series_number": _int(ds, "SeriesNumber"),
            "series_description": _text(ds, "SeriesDescription", 1024),
            "instance_number": _int(ds, "InstanceNumber"),
            "rows": _int(ds, "Rows"),
            "columns": _int(ds, "Columns"),
            "bits_allocated": _int(ds, "BitsAllocated"),
            "number_of_frames": _int(ds, "NumberOfFrames"),
        }
    except Exception as exc:  # noqa: BLE001 - undecodable values; never echo them
        raise InvalidDicom(f"object: unreadable attribute ({exc.__class__.__name__})") from None
    for key, what in (("sop_uid", "SOPInstanceUID"), ("study_uid", "StudyInstanceUID"),
                      ("series_uid", "SeriesInstanceUID"), ("sop_class_uid", "SOPClassUID")):
        try:
            query.check_uid(values[key], what)
        except ValueError:
            raise InvalidDicom(f"object: missing or invalid {what}") from None
    return values
