"""Build one DICOM Part 10 object, with fake identity planted everywhere it hides in the wild.

Identity is written where real modalities and RIS put it: the patient, study and
series modules, request and reference sequences (one and two levels deep),
descriptions and comments, and private elements of several vendors.  Every
identifying value goes through :class:`~safepacs.synth.planting.Planter`, so the
returned list of :class:`~safepacs.synth.answer_key.Planted` is complete by
construction.
"""

from __future__ import annotations

import random
import struct
from datetime import date, datetime

import numpy as np
from pydicom.charset import convert_encodings
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from safepacs.synth import charsets, images
from safepacs.synth.answer_key import Planted
from safepacs.synth.names import name_components
from safepacs.synth.plan import Instance, Patient, Series, Study, Text, plan_one
from safepacs.synth.planting import Planter

#: Fixed so the same seed gives byte-identical files (pydicom would write its own).
IMPLEMENTATION_CLASS_UID = "2.25.266838564406219409512297431716513904519"
IMPLEMENTATION_VERSION_NAME = "SAFEPACS_SYNTH1"

_DETACHED_PATIENT = "1.2.840.10008.3.1.2.1.1"  # Detached Patient Management SOP Class
_DETACHED_STUDY = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management SOP Class


def file_rngs(seed: int, index: int) -> tuple[random.Random, np.random.Generator]:
    """Independent streams for one file, so each file depends only on (seed, index)."""
    return random.Random(f"{seed}:{index}"), np.random.default_rng([seed, index])


def _da(d: date | datetime) -> str:
    return d.strftime("%Y%m%d")


def _tm(d: datetime) -> str:
    return d.strftime("%H%M%S.%f")


def _put_text(pl: Planter, keyword: str, text: Text | None) -> None:
    if text is not None and text.text:
        pl.text(keyword, text.text, text.embedded)


def build(inst: Instance, small: bool, seed: int = 0) -> tuple[FileDataset, list[Planted]]:
    """The dataset of ``inst`` and what was planted in it (``file`` left empty)."""
    series, study = inst.series, inst.series.study
    patient = study.patient
    rng, nprng = file_rngs(seed, inst.index)
    sop_class = images.SOP_CLASS[series.kind]

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = inst.uid
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if inst.implicit_vr else ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds = FileDataset(inst.path, {}, file_meta=meta, preamble=b"\0" * 128)

    planted: list[Planted] = []
    pl = Planter(ds, study.charset, planted)
    if study.charset.specific_character_set:
        scs = study.charset.specific_character_set
        pl.plain("SpecificCharacterSet", list(scs) if len(scs) > 1 else scs[0])
    pl.plain("SOPClassUID", sop_class)
    pl.plant("SOPInstanceUID", inst.uid, "uid")
    pl.plain("Modality", series.modality)
    if inst.burned_in is not None:
        pl.plain("BurnedInAnnotation", inst.burned_in)

    _patient(pl, patient, study)
    _study(pl, study)
    _series(pl, series)
    _instance(pl, inst)
    images.add_image(pl, inst, small, nprng)
    _private(pl, inst, rng)
    _settle(
        ds, inst.implicit_vr, convert_encodings(list(study.charset.specific_character_set) or "")
    )
    return ds, planted


def _settle(ds: Dataset, implicit_vr: bool, encodings: list[str]) -> None:
    """Mark the dataset and its items as already in their final encoding.

    Otherwise pydicom, seeing a dataset "created from scratch", decodes the raw ISO 2022
    elements with its own codec and re-encodes them on write, undoing their escapes.
    """
    ds.set_original_encoding(implicit_vr, True, encodings)
    for elem in ds.elements():
        if elem.VR == "SQ" and not isinstance(elem, RawDataElement):
            for item in elem.value:
                item._parent_encoding = encodings
                _settle(item, implicit_vr, encodings)


def _patient(pl: Planter, p: Patient, study: Study) -> None:
    has = study.has
    pl.name("PatientName", p.who)
    pl.plant("PatientID", p.patient_id, p.patient_id_kind)
    pl.plant("IssuerOfPatientID", study.site.issuer_of_patient_id, "institution")
    pl.plant("PatientBirthDate", _da(p.birth), "date")
    pl.unlisted("PatientSex", p.who.sex)
    pl.plant("PatientAge", study.age, "patient_characteristic")
    if "size_weight" in has:
        pl.plant("PatientSize", p.size, "patient_characteristic")
        pl.plant("PatientWeight", p.weight, "patient_characteristic")
    if "ethnic" in has:
        pl.plant("EthnicGroup", p.ethnic_group, "patient_characteristic")
    if "occupation" in has:
        pl.plant("Occupation", p.occupation, "patient_characteristic")
    if "address" in has:
        pl.plant("PatientAddress", p.address, "address")
    if "phone" in has:
        pl.plant("PatientTelephoneNumbers", [ph.short for ph in p.phones], "phone")
    if "email" in has:
        pl.plant("PatientTelecomInformation", p.email, "email")
    if "mother" in has:
        pl.name("PatientMotherBirthName", p.mother)
    if "other_ids" in has:
        pl.plant_each("OtherPatientIDs", [(v, kind) for v, kind, _ in p.other_ids])
    if "other_ids_seq" in has:
        for item, (value, kind, issuer) in zip(
            pl.sequence("OtherPatientIDsSequence", len(p.other_ids)), p.other_ids, strict=True
        ):
            item.plant("PatientID", value, kind)
            item.plant("IssuerOfPatientID", issuer, "institution")
            item.plain("TypeOfPatientID", "TEXT")
    if "ref_patient" in has:
        (item,) = pl.sequence("ReferencedPatientSequence")
        item.plain("ReferencedSOPClassUID", _DETACHED_PATIENT)
        item.plant("ReferencedSOPInstanceUID", p.uid, "uid")
    if "history" in has:
        _put_text(pl, "AdditionalPatientHistory", study.history)
    if "patient_comments" in has:
        _put_text(pl, "PatientComments", p.comments)


def _study(pl: Planter, s: Study) -> None:
    has = s.has
    day, clock = _da(s.when), _tm(s.when)
    pl.plant("StudyInstanceUID", s.uid, "uid")
    pl.plant("StudyDate", day, "date")
    pl.plant("StudyTime", clock, "time")
    pl.plant("AccessionNumber", s.accession, "id")
    pl.plant("StudyID", s.study_id, "id")
    pl.name("ReferringPhysicianName", s.referring)
    pl.name("NameOfPhysiciansReadingStudy", s.readers)
    pl.name("RequestingPhysician", s.requesting)
    _put_text(pl, "StudyDescription", s.description)
    pl.plant("InstitutionName", s.site.institution, "institution")
    pl.plant("InstitutionAddress", s.site.address, "institution")
    pl.plant("InstitutionalDepartmentName", s.site.department, "institution")
    pl.plant("PerformedProcedureStepID", s.performed_step_id, "id")
    pl.plant("PerformedProcedureStepStartDate", day, "date")
    pl.plant("PerformedProcedureStepStartTime", clock, "time")
    if "procedure_code" in has:
        (code,) = pl.sequence("ProcedureCodeSequence")
        code.plain("CodeValue", s.procedure_code)
        code.plain("CodingSchemeDesignator", "99SYNRIS")
        if s.code_meaning.embedded:
            _put_text(code, "CodeMeaning", s.code_meaning)
        else:
            code.plain("CodeMeaning", s.code_meaning.text)
    if "ref_study" in has:
        (ref,) = pl.sequence("ReferencedStudySequence")
        ref.plain("ReferencedSOPClassUID", _DETACHED_STUDY)
        ref.plant("ReferencedSOPInstanceUID", s.prior_uid or s.uid, "uid")
    if "request" in has:
        (req,) = pl.sequence("RequestAttributesSequence")
        req.plant("AccessionNumber", s.accession, "id")
        (issuer,) = req.sequence("IssuerOfAccessionNumberSequence")
        issuer.plant("LocalNamespaceEntityID", f"{s.site.code}-RIS", "institution")
        req.plant("RequestedProcedureID", s.requested_procedure_id, "id")
        _put_text(req, "RequestedProcedureDescription", s.requested)
        req.plant("ScheduledProcedureStepID", s.scheduled_step_id, "id")
        req.plain("ScheduledProcedureStepDescription", s.procedure)
        (ref,) = req.sequence("ReferencedStudySequence")  # two levels deep
        ref.plain("ReferencedSOPClassUID", _DETACHED_STUDY)
        ref.plant("ReferencedSOPInstanceUID", s.uid, "uid")


def _series(pl: Planter, s: Series) -> None:
    pl.plant("SeriesInstanceUID", s.uid, "uid")
    pl.plain("SeriesNumber", s.number)
    pl.plant("SeriesDate", _da(s.when), "date")
    pl.plant("SeriesTime", _tm(s.when), "time")
    _put_text(pl, "SeriesDescription", s.description)
    pl.plain("Manufacturer", s.equipment.manufacturer)
    pl.plain("ManufacturerModelName", s.equipment.model)
    pl.plant("StationName", s.equipment.station_name, "device")
    pl.plant("DeviceSerialNumber", s.equipment.serial_number, "device")
    pl.name("PerformingPhysicianName", s.performing)
    pl.name("OperatorsName", s.operators)
    if s.kind in ("CT", "MR"):
        pl.plant("FrameOfReferenceUID", s.frame_of_reference_uid, "uid")


def _instance(pl: Planter, inst: Instance) -> None:
    day, clock = _da(inst.when), _tm(inst.when)
    pl.plain("InstanceNumber", inst.number)
    pl.plant("InstanceCreationDate", day, "date")
    pl.plant("InstanceCreationTime", clock, "time")
    pl.plant("AcquisitionDate", day, "date")
    pl.plant("AcquisitionTime", clock, "time")
    pl.plant("ContentDate", day, "date")
    pl.plant("ContentTime", clock, "time")
    pl.plant("AcquisitionDateTime", inst.when.strftime("%Y%m%d%H%M%S.%f"), "datetime")
    _put_text(pl, "ImageComments", inst.comments)
    ref = inst.referenced
    if ref is not None:
        keyword = "ReferencedImageSequence" if ref.series is inst.series else "SourceImageSequence"
        (item,) = pl.sequence(keyword)
        item.plain("ReferencedSOPClassUID", images.SOP_CLASS[ref.series.kind])
        item.plant("ReferencedSOPInstanceUID", ref.uid, "uid")


# --- private elements -------------------------------------------------------------------


def _csa_blob(fields: list[tuple[str, str]]) -> bytes:
    """A Siemens-CSA-like "SV10" header: binary framing around ASCII name/value pairs."""
    out = bytearray(b"SV10\x04\x03\x02\x01")
    out += struct.pack("<II", len(fields), 77)
    for name, value in fields:
        out += name.encode("ascii").ljust(64, b"\0")
        data = value.encode("ascii") + b"\0"
        out += struct.pack("<IIII", len(data), 77, len(data), 77) + data.ljust(
            (len(data) + 3) & ~3, b"\0"
        )
    return bytes(out)


def _private(pl: Planter, inst: Instance, rng: random.Random) -> None:
    """Vendor private blocks (by the series' manufacturer) and a made-up RIS block."""
    study = inst.series.study
    p, vendor = study.patient, inst.series.equipment.vendor
    who, dob = p.who, _da(p.birth)
    # Vendors copy the PN value into an LO; fall back to the short form where the
    # escapes of three ISO 2022 groups would crowd the 64-byte limit.
    lo_name = who.pn if len(charsets.encode(who.pn, pl.charset, "LO")) <= 56 else who.display
    lo_parts = [lo_name, *(name_components(lo_name) if lo_name == who.pn else ())]
    if vendor == "GE":
        pl.private_creator(0x0011, "GEMS_PATI_01")
        pl.private(0x0011, 0x1010, "SS", 0)
        pl.private(0x0011, 0x1011, "LO", p.patient_id, [p.patient_id], whole=True)
        pl.private(0x0011, 0x1012, "LO", lo_name, lo_parts, whole=True)
    elif vendor == "SIEMENS":
        pl.private_creator(0x0029, "SIEMENS CSA HEADER")
        pl.private(0x0029, 0x1008, "CS", "IMAGE NUM 4")
        pl.private(0x0029, 0x1009, "LO", "V1")
        blob = _csa_blob(
            [
                ("PatientID", p.patient_id),
                ("PatientBirthDate", dob),
                ("AccessionNumber", study.accession),
            ]
        )
        pl.private(0x0029, 0x1010, "OB", blob, [p.patient_id, dob, study.accession])
    elif vendor == "PHILIPS":
        pl.private_creator(0x2001, "PHILIPS IMAGING DD 001")
        note = f"Patient {who.display} Tel {p.phones[0].spoken} DOB {dob}"
        pl.private(0x2001, 0x1090, "LT", note, [who.display, p.phones[0].spoken, dob])
        pl.private(0x2001, 0x1091, "LO", study.accession, [study.accession], whole=True)
    elif vendor == "AGFA":
        pl.private_creator(0x0019, "AGFA")
        pl.private(0x0019, 0x1010, "SH", "ADC_51XX")
        pl.private(0x0019, 0x1011, "LO", p.patient_id, [p.patient_id], whole=True)
        pl.private(0x0019, 0x1016, "LO", who.display, [who.display], whole=True)
    if "ris_private" in study.has:
        pl.private_creator(0x0033, "MEDICOM_RIS_07")
        pl.private(0x0033, 0x1010, "LO", lo_name, lo_parts, whole=True)
        pl.private(0x0033, 0x1011, "LO", p.email, [p.email], whole=True)
        pl.private(0x0033, 0x1012, "SH", p.phones[0].short, [p.phones[0].short], whole=True)
        pl.private(0x0033, 0x1013, "LO", dob, [dob], whole=True)
        # Explicit UN: what a router writes after losing the VR of an LO it did not know.
        pl.private(0x0033, 0x1014, "UN", p.address, [p.address], whole=True)
        rid = next((v for v, k, _ in p.other_ids if k == "resident_id"), p.other_ids[0][0])
        pl.private(
            0x0033, 0x1015, "LT", f"Registered {who.display}\r\nCard {rid}", [who.display, rid]
        )
        if rng.random() < 0.5:
            pl.private(0x0033, 0x1016, "UN", f"MRN={p.patient_id};DOB={dob}", [p.patient_id, dob])


def make_dataset(
    rng: random.Random, kind: str = "CT", charset: str = "ISO_IR 192", small: bool = True
) -> tuple[FileDataset, list[Planted]]:
    """One stand-alone dataset of image ``kind`` in ``charset``, plus what was planted.

    For unit tests elsewhere (de-identification, leak checks) that need one realistic
    object rather than a corpus.  ``kind`` is one of CR, DX, CT, MR, US, US_MF, XA;
    ``charset`` a label of :data:`safepacs.synth.charsets.CHARSETS`.  The result
    depends only on the state of ``rng``.  ``Planted.file`` is left empty.
    """
    inst = plan_one(rng, kind, charset)
    return build(inst, small, rng.getrandbits(32))
