"""Shared fixtures: small synthetic datasets built in code (fake identities only)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from safepacs.deid.keys import Keys
from safepacs.synth import AnswerKey, generate

pytest_plugins = ["tests.archive_fixtures"]  # database_url, archive, s3_url (see the module)

SHARED = Path(__file__).resolve().parents[2] / "shared"
TCIA = SHARED / "testdata" / "tcia-pseudo-phi"
needs_tcia = pytest.mark.skipif(not TCIA.is_dir(), reason="../shared/testdata is not beside this checkout")


def deid_report(output: Path) -> Path:
    """Where ``safepacs deid`` writes its report when not told: beside OUTPUT, never in it."""
    return output.parent / f"{output.name}.safepacs-deid-report.jsonl"


@pytest.fixture
def keys() -> Keys:
    return Keys(b"\x01" * 32)


@pytest.fixture
def other_keys() -> Keys:
    return Keys(b"\x02" * 32)


def with_damaged_vr(data: bytes, value: bytes, vr: bytes) -> bytes:
    """Explicit VR little-endian ``data`` with the VR of the element holding ``value`` (a
    short one: its VR lies 4 bytes before it) overwritten by ``vr``, as a damaged file has
    it: pydicom then cannot decode the element."""
    out = bytearray(data)
    at = out.index(value)
    out[at - 4 : at - 2] = vr
    return bytes(out)


def make_ct(charset: str = "ISO_IR 192", name: str = "ZHANG^WEI=张^伟") -> Dataset:
    """A small CT header with identity in the usual places and in nested sequences."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.99.1.3"
    ds.file_meta.SourceApplicationEntityTitle = "CT_ROOM_7"
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.99.1.3"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.99.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.99.1.2"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.99.1.9"
    ds.Modality = "CT"
    ds.BurnedInAnnotation = "NO"
    ds.PatientName = name
    ds.PatientID = "PID7734120"
    ds.PatientBirthDate = "19491231"
    ds.PatientSex = "M"
    ds.PatientAge = "076Y"
    ds.PatientAddress = "88 Huaihai Road, Shanghai"
    ds.StudyDate = "20240305"
    ds.StudyTime = "101530"
    ds.ContentDate = "20240305"
    ds.AcquisitionDateTime = "20240305101530.000000+0800"
    ds.AccessionNumber = "ACC99812"
    ds.InstitutionName = "Synthetic General Hospital"
    ds.StationName = "CTSTATION9"
    ds.Manufacturer = "ACME"
    ds.StudyDescription = "CHEST CT ZHANG WEI PID7734120"
    ds.Rows = 4
    ds.Columns = 4
    ds.PixelSpacing = [0.5, 0.5]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.add_new(0x00211001, "LO", "unlisted? no, private")  # private without creator
    ds.add_new(0x00190010, "LO", "GEMS_ACQU_01")
    ds.add_new(0x00191023, "DS", "12.5")
    ds.add_new(0x00191030, "LO", "PRIVATE ZHANG WEI")
    req = Dataset()
    req.AccessionNumber = "ACC99812"
    req.RequestedProcedureID = "RP5512"
    req.RequestedProcedureDescription = "CT chest for ZHANG WEI"
    inner = Dataset()
    inner.PatientName = name
    inner.CodeValue = "X1"
    inner.CodingSchemeDesignator = "99SYN"
    inner.CodeMeaning = "Chest"
    req.ReferencedPatientSequence = Sequence([inner])
    ds.RequestAttributesSequence = Sequence([req])
    ref = Dataset()
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.99.1.4"
    ds.ReferencedImageSequence = Sequence([ref])
    return ds


def write_media(folder: Path, datasets: list[Dataset]) -> Path:
    """A CD's layout as pydicom's FileSet writes it: a DICOMDIR whose records list each
    patient's name and ID, beside the objects themselves.  Returns the DICOMDIR."""
    from pydicom.fileset import FileSet

    media = FileSet()
    for ds in datasets:
        media.add(ds)
    media.write(folder)
    return folder / "DICOMDIR"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, AnswerKey]:
    """A 200-file synthetic corpus (small pixels), DICOM files only; the key beside it."""
    root = tmp_path_factory.mktemp("corpus")
    key = generate(root / "in", 200, 11, small=True)
    (root / "in" / "answer_key.json").rename(root / "answer_key.json")  # inputs: DICOM only
    return root / "in", key
