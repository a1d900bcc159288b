from __future__ import annotations

import pydicom
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from safepacs.deid.engine import IMPLEMENTATION_CLASS_UID, deidentify
from safepacs.deid.options import Options
from safepacs.errors import InvalidDicom, RejectedFile
from tests.conftest import make_ct


def test_patient_name_in_nested_sequence_is_removed(keys):
    out, _ = deidentify(make_ct(), Options(), keys)
    # RequestAttributesSequence is X in the basic profile: the whole sequence goes
    assert "RequestAttributesSequence" not in out
    assert out.PatientName == ""  # Z


def test_input_dataset_is_not_changed(keys):
    ds = make_ct()
    deidentify(ds, Options(), keys)
    assert ds.PatientID == "PID7734120"
    assert ds.RequestAttributesSequence[0].ReferencedPatientSequence[0].PatientName == "ZHANG^WEI=张^伟"


def test_actions_of_the_basic_profile(keys):
    out, _ = deidentify(make_ct(), Options(), keys)
    assert out.PatientID.startswith("SP") and out.PatientID != "PID7734120"  # Z/D -> pseudonym
    assert "PatientBirthDate" not in out or out.PatientBirthDate == ""  # Z
    assert "PatientAddress" not in out  # X
    assert out.AccessionNumber == ""  # Z
    assert out.StudyDate == ""  # Z
    assert out.ContentDate == "19000101"  # Z/D -> dummy
    assert out.InstitutionName == "ANONYMIZED"  # X/Z/D -> D
    assert "StudyDescription" not in out  # X
    assert out.Manufacturer == "ACME"  # on the reviewed keep-list
    assert out.PixelSpacing == [0.5, 0.5]  # numeric: kept
    assert out.Modality == "CT"


def test_uids_are_remapped_consistently_and_references_follow(keys):
    out, _ = deidentify(make_ct(), Options(), keys)
    assert out.SOPInstanceUID.startswith("2.25.")
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.SOPClassUID == make_ct().SOPClassUID  # well-known class UID kept
    # the referenced image is mapped exactly as that image's own SOPInstanceUID would be
    other = make_ct()
    other.SOPInstanceUID = "1.2.826.0.1.3680043.99.1.4"
    other_out, _ = deidentify(other, Options(), keys)
    assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == other_out.SOPInstanceUID
    assert out.StudyInstanceUID == other_out.StudyInstanceUID


def test_different_keys_share_no_uid_or_pseudonym(keys, other_keys):
    a, _ = deidentify(make_ct(), Options(), keys)
    b, _ = deidentify(make_ct(), Options(), other_keys)
    for kw in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID"):
        assert a[kw].value != b[kw].value


def test_private_attributes_removed_by_default_and_safe_ones_kept_on_request(keys):
    out, _ = deidentify(make_ct(), Options(), keys)
    assert not any(t.group & 1 for t in out.keys())
    safe, _ = deidentify(make_ct(), Options(retain_safe_private=True), keys)
    assert safe[0x00191023].value == 12.5  # GEMS_ACQU_01 table speed: on the safe list
    assert safe[0x00190010].value == "GEMS_ACQU_01"
    assert 0x00191030 not in safe  # same creator, not on the list
    assert 0x00211001 not in safe  # no creator at all


def test_unlisted_text_is_removed_and_unlisted_numbers_kept(keys):
    ds = make_ct()
    ds.add_new(0x00181030, "LO", "ZHANG WEI PROTOCOL")  # ProtocolName: in the table (X)
    ds.add_new(0x00189004, "CS", "RESEARCH")  # ContentQualification: unlisted CS
    ds.add_new(0x00280301, "CS", "NO")  # BurnedInAnnotation
    ds.add_new(0x00204000, "LT", "ZHANG WEI said hello")  # ImageComments: X
    ds.add_new(0x00180050, "DS", "1.25")  # SliceThickness: unlisted numeric
    ds.add_new(0x00400254, "LO", "PERFORMED BY ZHANG")  # listed
    ds.add_new(0x0018115E, "DS", "3.1")  # ImageAndFluoroscopyAreaDoseProduct
    ds.add_new(0x00189185, "ST", "free text nobody listed")  # unlisted ST
    out, _ = deidentify(ds, Options(), keys)
    assert out.SliceThickness == 1.25
    assert out.ContentQualification == "RESEARCH"
    assert 0x00189185 not in out
    assert "ImageComments" not in out


def test_modified_dates_shift_every_date_of_a_patient_by_the_same_offset(keys):
    opts = Options(retain_long_modified_dates=True)
    out, _ = deidentify(make_ct(), opts, keys)
    assert out.StudyDate != "20240305" and len(out.StudyDate) == 8
    assert out.StudyDate == out.ContentDate
    assert out.AcquisitionDateTime.startswith(out.StudyDate)
    assert out.AcquisitionDateTime.endswith("101530.000000+0800")  # time kept coherent
    again, _ = deidentify(make_ct(), opts, keys)
    assert again.StudyDate == out.StudyDate  # the same for every file of this patient
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"


def test_full_dates_keep_dates(keys):
    out, _ = deidentify(make_ct(), Options(retain_long_full_dates=True), keys)
    assert out.StudyDate == "20240305"
    assert out.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert "PatientBirthDate" not in out or out.PatientBirthDate == ""


def test_retain_options_keep_their_attributes(keys):
    opts = Options(
        retain_device_identity=True,
        retain_institution_identity=True,
        retain_patient_characteristics=True,
        retain_uids=True,
    )
    out, _ = deidentify(make_ct(), opts, keys)
    assert out.StationName == "CTSTATION9"
    assert out.InstitutionName == "Synthetic General Hospital"
    assert out.PatientSex == "M" and out.PatientAge == "076Y"
    assert out.SOPInstanceUID == "1.2.826.0.1.3680043.99.1.3"


def test_marking_lists_exactly_the_options_used(keys):
    out, _ = deidentify(make_ct(), Options(clean_descriptors=True, retain_uids=True), keys)
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113105", "113110"]
    assert out.PatientIdentityRemoved == "YES"
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    assert out.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert "SourceApplicationEntityTitle" not in out.file_meta


def test_clean_descriptors_keeps_description_without_identity(keys):
    out, _ = deidentify(make_ct(), Options(clean_descriptors=True), keys)
    assert "CHEST CT" in out.StudyDescription
    assert "ZHANG" not in out.StudyDescription.upper()
    assert "PID7734120" not in out.StudyDescription
    req = out.RequestAttributesSequence[0]  # C: kept, walked, cleaned
    assert "ZHANG" not in req.RequestedProcedureDescription.upper()
    assert req.AccessionNumber == ""


@pytest.mark.parametrize("retain_institution", [False, True])
def test_clean_descriptors_removes_issuers_with_the_ids_they_issued(keys, retain_institution):
    """Issuers count as institution values, scrubbed from kept descriptions like the
    patient's ID, whether or not the institution's identity is retained."""
    ds = make_ct()
    ds.IssuerOfPatientID = "CCHS"
    accession = Dataset()
    accession.LocalNamespaceEntityID = "CCHS-RIS"
    ds.IssuerOfAccessionNumberSequence = [accession]
    ds.StudyDescription = "CT HEAD CCHS-RIS PID7734120 CCHS"
    options = Options(clean_descriptors=True, retain_institution_identity=retain_institution)
    out, _ = deidentify(ds, options, keys)
    assert out.StudyDescription == "CT HEAD *** *** ***"
    assert "IssuerOfPatientID" not in out  # X, with or without the option
    assert all("LocalNamespaceEntityID" not in item
               for item in out.get("IssuerOfAccessionNumberSequence", []))


def test_structured_content_is_dummied_or_cleaned(keys):
    ds = make_ct()
    item = Dataset()
    item.ValueType = "TEXT"
    item.TextValue = "Patient ZHANG WEI, call 13812345678"
    item.PersonName = "ZHANG^WEI"
    ds.ContentSequence = Sequence([item])
    out, _ = deidentify(ds, Options(), keys)
    assert out.ContentSequence[0].TextValue == "ANONYMIZED"
    assert out.ContentSequence[0].PersonName == "ANONYMIZED"
    cleaned, _ = deidentify(ds, Options(clean_structured_content=True), keys)
    text = cleaned.ContentSequence[0].TextValue
    assert "ZHANG" not in text.upper() and "13812345678" not in text and "Patient" in text


def test_burned_in_risk_is_refused_unless_accepted(keys):
    ds = make_ct()
    ds.Modality = "US"
    del ds.BurnedInAnnotation
    with pytest.raises(RejectedFile, match="burned-in"):
        deidentify(ds, Options(), keys)
    ds.BurnedInAnnotation = "YES"
    ds.Modality = "CT"
    with pytest.raises(RejectedFile, match="BurnedInAnnotation is YES"):
        deidentify(ds, Options(), keys)
    out, _ = deidentify(ds, Options(accept_burned_in_risk=True), keys)
    assert out.PatientIdentityRemoved == "YES"


def test_unknown_character_set_is_refused(keys):
    ds = make_ct()
    ds.SpecificCharacterSet = "ISO_IR 999"
    with pytest.raises(InvalidDicom, match="SpecificCharacterSet"):
        deidentify(ds, Options(), keys)


@pytest.mark.parametrize(
    "charset,name",
    [
        ("ISO_IR 192", "王^小明=王^小明"),
        ("GB18030", "李^娜=李^娜"),
        ("GBK", "刘^洋"),
        ("ISO_IR 100", "Müller^Jürgen"),
        (["", "ISO 2022 IR 58"], "Zhang^San=张^三"),
        (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう"),
        (["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동"),
    ],
)
def test_character_sets_stay_consistent(keys, charset, name, tmp_path):
    import pydicom

    ds = make_ct(charset=charset, name=name)
    ds.StudyDescription = "胸部 CT " + name.split("=")[-1]
    out, delta = deidentify(ds, Options(clean_descriptors=True), keys)
    path = tmp_path / "x.dcm"
    out.save_as(path, enforce_file_format=True)
    back = pydicom.dcmread(path)
    assert back.SpecificCharacterSet == ds.SpecificCharacterSet
    for part in name.replace("=", "^").split("^"):
        if len(part) >= 2:
            assert part not in str(back.StudyDescription)
            assert part.encode("utf-8") not in path.read_bytes()
    assert back.PatientName == ""


@pytest.mark.parametrize("name", ["OT-PAL-8-face.dcm", "gdcm-US-ALOKA-16.dcm"])
def test_palette_descriptors_of_an_implicit_vr_file_are_kept(keys, name):
    """Read from an implicit VR file, the palette descriptors have the dictionary's VR
    "US or SS": they are numbers and stay, or the colour image cannot be shown."""
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_color_lut
    from pydicom.uid import ImplicitVRLittleEndian

    ds = pydicom.dcmread(get_testdata_file(name), force=True)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian  # OT-PAL-8-face has no meta
    descriptors = [0x00281101, 0x00281102, 0x00281103]
    assert all(ds.get_item(t).VR is None for t in descriptors)  # raw, VR from the dictionary
    out, _ = deidentify(ds, Options(accept_burned_in_risk=True), keys)
    assert [list(out[t].value) for t in descriptors] == [list(ds[t].value) for t in descriptors]
    assert apply_color_lut(out.pixel_array, out).shape[-1] == 3


def test_required_unlisted_text_is_replaced_not_removed(keys):
    """Type 1 / Type 2 text the table does not list: the value goes, the attribute stays
    (a dummy, or empty), so the object stays conformant."""
    ds = make_ct()
    ds.SegmentLabel = "ZHANG WEI tumour"  # Type 1 in SEG, typed by people
    ds.ContentDescription = "for Dr ZHANG"  # Type 2
    ds.SegmentDescription = "ZHANG again"  # Type 3: removed
    ds.StackID = "1"  # technical (keep-list): InStackPositionNumber needs it
    out, _ = deidentify(ds, Options(), keys)
    assert out.SegmentLabel == "ANONYMIZED"
    assert "ContentDescription" in out and out.ContentDescription == ""
    assert "SegmentDescription" not in out
    assert out.StackID == "1"


def test_segment_labels_and_descriptions_are_cleaned_under_clean_descriptors(keys):
    """Segment labels are what a segmentation is for ("Liver", "Tumour 1"): the table lists
    ROI Name and Structure Set Label as C under Clean Descriptors, but not Segment Label.
    Under the option they are cleaned like its descriptors; without it, replaced as above.
    The identity delta still gives the typed values back."""
    from safepacs.deid.delta import IdentityDelta

    ds = make_ct()
    segment = Dataset()
    segment.SegmentNumber = 1
    segment.SegmentLabel = "Liver of ZHANG WEI"
    segment.SegmentDescription = "liver, drawn for Zhang Wei"
    ds.SegmentSequence = [segment]
    ds.ContentDescription = "AI liver segmentation"
    out, delta = deidentify(ds, Options(clean_descriptors=True), keys)
    kept = out.SegmentSequence[0]
    assert kept.SegmentLabel.startswith("Liver") and "ZHANG" not in kept.SegmentLabel.upper()
    assert kept.SegmentDescription.startswith("liver") and "ZHANG" not in kept.SegmentDescription.upper()
    assert out.ContentDescription == "AI liver segmentation"
    restored = IdentityDelta.from_bytes(delta.to_bytes()).apply(out)
    assert restored.SegmentSequence[0].SegmentLabel == "Liver of ZHANG WEI"
    assert restored.SegmentSequence[0].SegmentDescription == "liver, drawn for Zhang Wei"

    plain, _ = deidentify(ds, Options(), keys)
    assert plain.SegmentSequence[0].SegmentLabel == "ANONYMIZED"
    assert "SegmentDescription" not in plain.SegmentSequence[0]
    assert plain.ContentDescription == ""


def test_an_animal_patients_species_and_breed_are_replaced_not_removed(keys):
    """A veterinary file (the deid project's cat): species is Type 1C and breed Type 2C when
    the patient is an animal; removed as unlisted text, the object lost conformance."""
    ds = make_ct()
    ds.PatientSpeciesDescription = "Feline, owner ZHANG"  # free text: typed by people
    ds.PatientBreedDescription = "Maine Coon from ZHANG's cattery"
    out, _ = deidentify(ds, Options(), keys)
    assert out.PatientSpeciesDescription == "ANONYMIZED"
    assert "PatientBreedDescription" in out and out.PatientBreedDescription == ""


def test_an_animal_patients_responsible_person_and_organization_are_emptied_not_removed(keys):
    """Both are Type 2C for an animal patient and X in Table E.1-1: removed, they left the
    cat of the deid-data package with two dciodvfy errors its original did not have."""
    ds = make_ct()
    ds.PatientSpeciesDescription = "Feline"
    ds.ResponsiblePerson = "ZHANG^WEI"
    ds.ResponsiblePersonRole = "OWNER"
    ds.ResponsibleOrganization = "ZHANG's cattery"
    out, _ = deidentify(ds, Options(), keys)
    assert "ResponsiblePerson" in out and out.ResponsiblePerson == ""
    assert "ResponsibleOrganization" in out and out.ResponsibleOrganization == ""
    assert out.ResponsiblePersonRole == "OWNER"


def test_standard_elements_written_as_un_are_decided_by_their_tag(keys):
    """A converter that lost the VRs writes known elements as UN: a slice thickness is
    still a number (kept), a listed name is still replaced, unlisted text still removed."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = make_ct()
    for tag, raw in ((0x00180050, b"2.5 "), (0x00081070, b"OPERATOR^ONE"), (0x00620006, b"ZHANG "),
                     (0x00200013, b"7 ")):
        ds[tag] = RawDataElement(Tag(tag), "UN", len(raw), raw, 0, False, True)
    out, _ = deidentify(ds, Options(), keys)
    assert out[0x00180050].value in (b"2.5 ", "2.5")  # SliceThickness kept
    assert out[0x00200013].value in (b"7 ", 7)  # InstanceNumber kept
    assert 0x00620006 not in out  # SegmentDescription: unlisted text, removed
    if 0x00081070 in out:  # OperatorsName: listed (X/Z/D), never kept
        value = out[0x00081070].value
        assert b"OPERATOR" not in (value if isinstance(value, bytes) else str(value or "").encode())


def test_device_text_that_iods_require_is_kept(keys):
    """FluenceModeID (Type 1C in an RT plan's beams, e.g. a flattening-filter-free beam) and
    PaddleDescription (Type 1 in breast tomosynthesis acquisition) name a machine mode and a
    compression paddle; removed as unlisted text, real RT plans and tomosynthesis objects
    gained a dciodvfy 'Missing attribute' error their originals did not have."""
    ds = make_ct()
    fluence = Dataset()
    fluence.FluenceMode = "NON_STANDARD"
    fluence.FluenceModeID = "FFF"
    beam = Dataset()
    beam.BeamNumber = 1
    beam.PrimaryFluenceModeSequence = Sequence([fluence])
    ds.BeamSequence = Sequence([beam])
    acquisition = Dataset()
    acquisition.PaddleDescription = "SPOT 7.5CM"
    ds.XRay3DAcquisitionSequence = Sequence([acquisition])
    out, _ = deidentify(ds, Options(), keys)
    assert out.BeamSequence[0].PrimaryFluenceModeSequence[0].FluenceModeID == "FFF"
    assert out.XRay3DAcquisitionSequence[0].PaddleDescription == "SPOT 7.5CM"


def test_utc_offset_stays_as_it_is_when_dates_are_shifted(keys):
    """Retain Longitudinal Modified Dates cleans (C) TimezoneOffsetFromUTC: a whole-day shift
    leaves it valid as it was.  Cleaned as free text, it became '***' (not an offset) in a
    real enhanced MR with Clean Descriptors."""
    ds = make_ct()
    ds.TimezoneOffsetFromUTC = "+0200"
    ds.AcquisitionDateTime = "20130711161700+0200"
    out, _ = deidentify(ds, Options(retain_long_modified_dates=True, clean_descriptors=True), keys)
    assert out.TimezoneOffsetFromUTC == "+0200"
    assert out.AcquisitionDateTime.endswith("161700+0200") and out.AcquisitionDateTime != ds.AcquisitionDateTime


@pytest.mark.parametrize(
    ("options", "kept"),
    [
        (Options(clean_descriptors=True), False),
        (Options(clean_descriptors=True, retain_long_modified_dates=True), False),  # unshifted
        (Options(clean_descriptors=True, retain_long_full_dates=True), True),
    ],
)
def test_a_date_in_a_cleaned_description_goes_unless_dates_are_kept(keys, options, kept):
    ds = make_ct()
    ds.StudyDescription = "CT chest, compared with 2 Nov 2019 and 2019年11月2日"
    out, _ = deidentify(ds, options, keys)
    assert out.StudyDescription.startswith("CT chest, compared with ")
    assert ("2 Nov 2019" in out.StudyDescription) is kept
    assert ("2019年11月2日" in out.StudyDescription) is kept


def _encapsulated(mime: str) -> Dataset:
    ds = make_ct()
    ds.MIMETypeOfEncapsulatedDocument = mime
    ds.DocumentTitle = "Report for ZHANG WEI"
    ds.HL7InstanceIdentifier = "ZHANG-DOC-778899^^^HOSP"
    ds.EncapsulatedDocument = b"%PDF-1.4 (ZHANG WEI)\n"
    return ds


@pytest.mark.parametrize(("mime", "kept"), [("application/pdf", True), ("TEXT/XML ", True),
                                             ("model/stl", True), ("ZHANG^WEI", False),
                                             ("application/pdf; name=ZHANG", False)])
def test_an_encapsulated_documents_attributes_stay_conformant_and_say_nothing(keys, mime, kept):
    """The MIME type (Type 1) keeps a value the standard defines for it, else a dummy; the
    title (Type 2) is emptied and the CDA's HL7 instance identifier (Type 1C) dummied: as
    unlisted text they were removed, a dciodvfy error the original did not have."""
    out, _ = deidentify(_encapsulated(mime), Options(), keys)
    assert out.MIMETypeOfEncapsulatedDocument == (mime if kept else "ANONYMIZED")
    assert "DocumentTitle" in out and out.DocumentTitle == ""
    assert out.HL7InstanceIdentifier == "ANONYMIZED"
    assert b"ZHANG" not in out.EncapsulatedDocument  # D in Table E.1-1


def test_an_encapsulated_documents_title_is_cleaned_under_clean_descriptors(keys):
    out, _ = deidentify(_encapsulated("application/pdf"), Options(clean_descriptors=True), keys)
    assert out.DocumentTitle.startswith("Report for ") and "ZHANG" not in out.DocumentTitle


@pytest.mark.parametrize(("label", "options", "expected"), [
    ("ZHANG_WEI", Options(), "ANONYMIZED"),
    ("LIVER_SEG", Options(), "ANONYMIZED"),  # the basic profile keeps no typed label
    ("LIVER_SEG", Options(clean_descriptors=True), "LIVER_SEG"),
    ("ZHANG_WEI", Options(clean_descriptors=True), "ANONYMIZED"),
    ("SEG PX778899", Options(clean_descriptors=True), "ANONYMIZED"),
])
def test_a_content_label_is_a_typed_label_not_a_defined_term(keys, label, options, expected):
    """ContentLabel (Type 1 in presentation states and segmentations) is a code string that
    people type: 'ZHANG_WEI' fits in one.  It was kept as coded strings are."""
    ds = make_ct()
    ds.PatientName, ds.PatientID = "ZHANG^WEI", "PX778899"
    ds.ContentLabel = label
    out, _ = deidentify(ds, options, keys)
    assert out.ContentLabel == expected


def test_kept_device_explanations_lose_a_typed_name_under_clean_descriptors(keys):
    ds = make_ct()
    ds.PatientName = "ZHANG^WEI"
    mapping = Dataset()
    mapping.LUTExplanation = "ADC of ZHANG"
    ds.RealWorldValueMappingSequence = Sequence([mapping])
    ds.WindowCenterWidthExplanation = "SOFT TISSUE"
    basic, _ = deidentify(ds, Options(), keys)
    assert basic.RealWorldValueMappingSequence[0].LUTExplanation == "ADC of ZHANG"  # reviewed keep
    cleaned, _ = deidentify(ds, Options(clean_descriptors=True), keys)
    assert cleaned.RealWorldValueMappingSequence[0].LUTExplanation == "ADC of ***"
    assert cleaned.WindowCenterWidthExplanation == "SOFT TISSUE"


@pytest.mark.parametrize(("options", "date"), [
    (Options(), "19000101"),
    (Options(retain_long_full_dates=True), "20250102"),
    (Options(retain_long_modified_dates=True), None),  # moved by the patient's offset
])
def test_a_presentation_states_creation_date_stays_present(keys, options, date):
    """Type 1 in every presentation state and X in Table E.1-1: removed, every de-identified
    presentation state had a dciodvfy error its original did not have."""
    ds = make_ct()
    ds.PresentationCreationDate, ds.PresentationCreationTime = "20250102", "101112"
    out, _ = deidentify(ds, options, keys)
    if date is None:
        assert out.PresentationCreationDate not in ("20250102", "19000101", "")
    else:
        assert out.PresentationCreationDate == date
    assert out.PresentationCreationTime == ("000000" if date == "19000101" else "101112")


def test_required_text_of_hanging_protocols_and_lensometry_is_replaced_not_removed(keys):
    """Type 1 (a hanging protocol's name, description, creator) and Type 2 (a lens's
    description): found by running dciodvfy on an object of every storage SOP class."""
    ds = make_ct()
    ds.HangingProtocolName, ds.HangingProtocolDescription = "CHEST ZHANG", "by ZHANG"
    ds.HangingProtocolCreator, ds.LensDescription = "ZHANG^WEI", "lens of ZHANG"
    out, _ = deidentify(ds, Options(), keys)
    assert [out.HangingProtocolName, out.HangingProtocolDescription, out.HangingProtocolCreator] == \
        ["ANONYMIZED"] * 3
    assert "LensDescription" in out and out.LensDescription == ""
