"""C-FIND / C-GET / C-MOVE identifiers to archive searches and back.  Pure functions.

A non-empty element of the identifier is a matching key (its DICOM query string goes to
``Archive.search`` unchanged); every element, empty or not, is a return key.  Answers hold
exactly the requested keys, as PS3.4 C.4.1.1.3 asks.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import Dataset
from pydicom.multival import MultiValue

from safepacs.deid.mislabelled import read_as_written

LEVELS = {"PATIENT": "study", "STUDY": "study", "SERIES": "series", "IMAGE": "instance"}
_NOT_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet"}
PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")


class IdentifierError(ValueError):
    """The identifier cannot be answered (unknown level, sequence matching...)."""


@dataclass(frozen=True)
class Request:
    dicom_level: str  # PATIENT, STUDY, SERIES, IMAGE
    level: str  # the archive's: study, series, instance
    filters: dict[str, str]
    return_keys: tuple[str, ...]


def value_text(value: object) -> str:
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return "" if value is None else str(value)


def parse(identifier: Dataset, *, model: str) -> Request:
    """``model`` is ``patient`` or ``study`` (the information model's root)."""
    dicom_level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if dicom_level not in LEVELS:
        raise IdentifierError("QueryRetrieveLevel must be PATIENT, STUDY, SERIES or IMAGE")
    if model == "study" and dicom_level == "PATIENT":
        raise IdentifierError("the study root model has no PATIENT level")
    read_as_written(identifier)  # query text too: in the set it is written in (a name matches)
    filters: dict[str, str] = {}
    keys: list[str] = []
    for elem in identifier:
        kw = elem.keyword
        if not kw or kw in _NOT_KEYS:
            continue
        if elem.VR == "SQ":
            continue  # sequence matching is not offered; the key is simply not returned
        keys.append(kw)
        text = value_text(elem.value).strip()
        if text and text != "*":
            filters[kw] = text
    return Request(dicom_level, LEVELS[dicom_level], filters, tuple(keys))


def answer(result: Dataset, request: Request, *, ae_title: str) -> Dataset:
    """The response identifier: the requested keys only, empty where the archive has none."""
    out = Dataset()
    non_ascii = False
    for kw in request.return_keys:
        value = result.get(kw, None)
        if value is None:
            setattr(out, kw, "")
            continue
        out[kw] = result[kw]
        non_ascii = non_ascii or not value_text(value).isascii()
    out.QueryRetrieveLevel = request.dicom_level
    out.RetrieveAETitle = ae_title
    # Values in the answer are str; say how they are to be encoded (UTF-8 keeps every script).
    out.SpecificCharacterSet = "ISO_IR 192" if non_ascii else "ISO_IR 100"
    return out


def patients(results: list[Dataset]) -> list[Dataset]:
    """Study-level results reduced to one per patient (PATIENT level of the patient root)."""
    seen: dict[str, Dataset] = {}
    for ds in results:
        pid = str(ds.get("PatientID", ""))
        if pid not in seen:
            seen[pid] = ds
    return list(seen.values())
