"""Small synthetic objects for archive tests (fake identities only)."""

from __future__ import annotations

import io

from pydicom.uid import MRImageStorage

from safepacs.store import crypto
from tests.conftest import make_ct


def ct_bytes(
    sop: str = "1.2.826.0.1.3680043.99.1.3",
    *,
    study: str = "1.2.826.0.1.3680043.99.1",
    series: str = "1.2.826.0.1.3680043.99.1.2",
    patient_id: str = "PID7734120",
    name: str = "ZHANG^WEI=张^伟",
    study_date: str = "20240305",
    accession: str = "ACC99812",
    modality: str = "CT",
    pixel: int = 7,
    address: str | None = None,
    side: int = 4,
) -> bytes:
    """A ``side`` x ``side`` 16-bit image (4x4 by default) with identity in the usual places;
    ``pixel`` varies the content."""
    ds = make_ct(name=name)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID, ds.StudyDate, ds.AccessionNumber = patient_id, study_date, accession
    ds.Modality = modality
    if address is not None:
        ds.PatientAddress = address
    if modality == "MR":
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.Rows = ds.Columns = side
    ds.PixelData = bytes([pixel, 0]) * (side * side)
    fp = io.BytesIO()
    ds.save_as(fp, enforce_file_format=True)
    return fp.getvalue()


def segment_start(index: int) -> int:
    """Where sealed segment ``index`` begins in an object blob (see store.crypto)."""
    return crypto._HEAD + index * (crypto.SEGMENT + 16)
