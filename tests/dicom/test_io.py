"""Bad input: each file gets a reason a person can act on, and nothing leaks into it."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from safepacs.deid.engine import deidentify_inplace
from safepacs.deid.keys import Keys
from safepacs.deid.options import Options
from safepacs.dicom.io import read_header, write_atomic, write_bytes_atomic
from safepacs.errors import InvalidDicom, MediaIndex
from tests.conftest import make_ct, write_media

CT = Path(get_testdata_file("CT_small.dcm"))


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _with_length(data: bytes, new_len: int) -> bytes:
    i = data.find(b"\x10\x00\x10\x00PN")  # PatientName, explicit VR
    return data[: i + 6] + new_len.to_bytes(2, "little") + data[i + 8 :]


@pytest.mark.parametrize(
    "name,mutate,reason",
    [
        ("empty.dcm", lambda b: b"", "empty file"),
        ("text.dcm", lambda b: b"not dicom at all\n" * 20, "no DICM prefix"),
        ("cut_header.dcm", lambda b: b[:600], "cut short"),
        ("cut_pixels.dcm", lambda b: b[:-1000], "truncated file"),
        ("long_len.dcm", lambda b: _with_length(b, 60000), "truncated file or wrong length"),
        ("short_len.dcm", lambda b: _with_length(b, 19), "invalid VR"),
        ("meta_vr.dcm", lambda b: b.replace(b"\x02\x00\x12\x00UI", b"\x02\x00\x12\x00Ur", 1),
         r"invalid VR at byte \d+ for element \(0002,0012\)"),
    ],
)
def test_malformed_files_are_refused_with_a_reason(tmp_path, name, mutate, reason):
    path = _write(tmp_path, name, mutate(CT.read_bytes()))
    with pytest.raises(InvalidDicom, match=reason) as err:
        read_header(path)
    original = pydicom.dcmread(CT)
    assert str(original.PatientName) not in str(err.value)
    assert str(err.value).startswith(name)


def test_an_object_named_only_by_its_file_meta_is_refused_as_incomplete(tmp_path):
    """Derived volumes of research tools, seen in the wild, lack SOPClassUID and
    SOPInstanceUID in the dataset while the file meta names them: refused, and the reason
    says what is missing rather than that the file is no DICOM at all."""
    ds = pydicom.dcmread(CT)
    del ds.SOPInstanceUID, ds.SOPClassUID
    ds.save_as(tmp_path / "derived.dcm")
    with pytest.raises(InvalidDicom, match="only its file meta names the object") as err:
        read_header(tmp_path / "derived.dcm")
    assert "not a DICOM object" not in str(err.value)
    assert str(ds.PatientName) not in str(err.value)


def test_a_worklist_item_is_refused_as_one(tmp_path):
    """A modality worklist file (Orthanc's and DCMTK's samples, a RIS export) holds a
    scheduled procedure step, no SOP Instance: the reason says so."""
    from pydicom.dataset import FileMetaDataset

    ds = pydicom.Dataset()
    ds.PatientName = "WORKLIST^PATIENT"
    ds.PatientID = "WL-0001"
    step = pydicom.Dataset()
    step.Modality = "CR"
    step.ScheduledStationAETitle = "CR1"
    ds.ScheduledProcedureStepSequence = [step]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.preamble = b"\0" * 128
    ds.save_as(tmp_path / "item.wl")
    with pytest.raises(InvalidDicom, match="a modality worklist item") as err:
        read_header(tmp_path / "item.wl")
    assert "WORKLIST" not in str(err.value) and "WL-0001" not in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file; see the missing-file case")
def test_unreadable_file_is_refused(tmp_path):
    path = _write(tmp_path, "locked.dcm", CT.read_bytes())
    path.chmod(0)
    with pytest.raises(InvalidDicom, match="cannot read"):
        read_header(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(InvalidDicom, match="cannot read"):
        read_header(tmp_path / "gone.dcm")


def test_pixels_are_copied_byte_for_byte(tmp_path):
    src = read_header(CT)
    assert src.pixel_start is not None and src.trailer is not None  # CT_small has padding
    out = tmp_path / "o.dcm"
    write_atomic(src, src.dataset, out)
    a, b = pydicom.dcmread(CT), pydicom.dcmread(out)
    assert a.PixelData == b.PixelData
    assert b.preamble == b"\x00" * 128
    assert not list(tmp_path.glob(".*.part"))


def test_encapsulated_pixels_are_located(tmp_path):
    path = Path(get_testdata_file("JPEG2000.dcm"))
    src = read_header(path)
    out = tmp_path / "j.dcm"
    write_atomic(src, src.dataset, out)
    assert pydicom.dcmread(out).PixelData == pydicom.dcmread(path).PixelData


def test_fast_header_writer_matches_pydicom_byte_for_byte(corpus):
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.uid import ImplicitVRLittleEndian

    from safepacs.deid.engine import deidentify_inplace
    from safepacs.deid.keys import Keys
    from safepacs.deid.options import Options
    from safepacs.dicom.io import _write_fast

    src, _ = corpus
    files = sorted(src.rglob("*.dcm"))[:80]
    implicit_seen = False
    for path in files:
        ds = read_header(path).dataset
        deidentify_inplace(ds, Options(clean_descriptors=True, accept_burned_in_risk=True), Keys(b"\x03" * 32))
        implicit = ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
        implicit_seen |= implicit
        a, b = DicomBytesIO(), DicomBytesIO()
        for fp in (a, b):
            fp.is_implicit_VR, fp.is_little_endian = implicit, True
        write_dataset(a, ds)
        _write_fast(b, ds, implicit, True)
        assert a.getvalue() == b.getvalue(), path.name
    assert implicit_seen  # both transfer syntaxes exercised


def test_bare_dataset_without_meta_is_accepted_and_given_meta(tmp_path):
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = pydicom.dcmread(CT)
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = True, True
    write_dataset(fp, ds)
    bare = _write(tmp_path, "bare.dcm", fp.getvalue())
    src = read_header(bare)
    assert src.dataset.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    out = tmp_path / "out.dcm"
    write_atomic(src, src.dataset, out)
    assert pydicom.dcmread(out).PixelData == ds.PixelData
    # cut anywhere, even at an element boundary, it is refused
    for cut in (len(fp.getvalue()) // 3, len(fp.getvalue()) - 100):
        with pytest.raises(InvalidDicom, match="not a DICOM file"):
            read_header(_write(tmp_path, f"cut{cut}.dcm", fp.getvalue()[:cut]))


def _nested_dataset_bytes(implicit: bool) -> bytes:
    """A header with nested sequences, an undefined-length sequence and item, and an item
    in its own character set, written by pydicom then read back (so elements are raw)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.sequence import Sequence

    inner = Dataset()
    inner.SpecificCharacterSet = "GB18030"
    inner.PatientName = "王^小明"
    inner.CodeMeaning = "胸部"
    deep = Dataset()
    deep.ReferencedSOPInstanceUID = "1.2.3.4.5"
    deep.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    mid = Dataset()
    mid.ReferencedImageSequence = Sequence([deep, deep])
    mid.StudyDescription = "CHEST PA"
    mid.ConceptNameCodeSequence = Sequence([inner])
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Hans"
    ds.SOPInstanceUID = "1.2.3.9"
    ds.RequestAttributesSequence = Sequence([mid])
    ds.ProcedureCodeSequence = Sequence([Dataset(), mid])
    ds["ProcedureCodeSequence"].is_undefined_length = True
    ds.ProcedureCodeSequence[1].is_undefined_length_sequence_item = True
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, True
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize("implicit", [False, True])
def test_fast_writer_writes_nested_sequences_like_pydicom(implicit):
    from pydicom.dataelem import DataElement
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_dataset

    from safepacs.dicom.io import _write_fast

    ds = read_dataset(DicomBytesIO(_nested_dataset_bytes(implicit)), implicit, True)
    # changed values at every depth, as the engine leaves them
    ds.RequestAttributesSequence[0]["StudyDescription"] = DataElement(0x00081030, "LO", "X")
    deep = ds.RequestAttributesSequence[0].ReferencedImageSequence[1]
    deep["ReferencedSOPInstanceUID"] = DataElement(0x00081155, "UI", "2.25.1234")
    inner = ds.ProcedureCodeSequence[1].ConceptNameCodeSequence[0]
    inner["PatientName"] = DataElement(0x00100010, "PN", "李^四")
    a, b = DicomBytesIO(), DicomBytesIO()
    for fp in (a, b):
        fp.is_implicit_VR, fp.is_little_endian = implicit, True
    write_dataset(a, ds)
    _write_fast(b, ds, implicit, True)
    assert a.getvalue() == b.getvalue()
    again = read_dataset(DicomBytesIO(b.getvalue()), implicit, True)
    assert str(again.ProcedureCodeSequence[1].ConceptNameCodeSequence[0].PatientName) == "李^四"


@pytest.mark.parametrize("drop", [None, "ImplementationClassUID", "FileMetaInformationGroupLength"])
def test_meta_writer_matches_pydicom(drop):
    import copy

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    from safepacs.dicom.io import write_meta

    meta = pydicom.dcmread(CT, stop_before_pixels=True).file_meta
    meta.MediaStorageSOPInstanceUID = "2.25.42"  # a changed value beside raw ones
    if drop:
        del meta[drop]
    a, b = DicomBytesIO(), DicomBytesIO()
    write_file_meta_info(a, copy.deepcopy(meta))
    write_meta(b, meta)
    assert a.getvalue() == b.getvalue()
    assert meta.FileMetaInformationGroupLength == len(b.getvalue()) - 12
    del meta["TransferSyntaxUID"]
    with pytest.raises(AttributeError) as theirs:
        write_file_meta_info(DicomBytesIO(), copy.deepcopy(meta))
    with pytest.raises(theirs.type):
        write_meta(DicomBytesIO(), meta)  # the same refusal as pydicom's


@pytest.mark.parametrize("chunk", [64, 700, 1500, 4096])
def test_a_header_longer_than_the_first_read_is_parsed_from_the_file(monkeypatch, chunk):
    """The header is parsed from one read of the file's start when it lies within it; cut
    anywhere by that read (mid-element, mid-sequence), it is parsed from the file instead,
    with the same result."""
    import safepacs.dicom.io as dio

    paths = [CT, Path(get_testdata_file("JPEG2000.dcm")), Path(get_testdata_file("MR_small.dcm"))]
    whole = [read_header(p) for p in paths]
    monkeypatch.setattr(dio, "_HEAD_CHUNK", chunk)
    for path, ref in zip(paths, whole, strict=True):
        got = read_header(path)
        assert (got.pixel_start, got.pixel_end) == (ref.pixel_start, ref.pixel_end)
        assert got.dataset == ref.dataset and got.dataset.file_meta == ref.dataset.file_meta


def test_a_damaged_vr_in_a_big_endian_file_is_malformed_not_an_internal_error(tmp_path):
    """Big endian files are parsed by pydicom, not checked byte by byte; an element whose
    VR is not one is still found when the file is read, named by its tag only."""
    data = Path(get_testdata_file("MR_small_bigendian.dcm")).read_bytes()
    at = data.index(b"\x00\x10\x00\x10PN")  # PatientName, explicit VR big endian
    path = _write(tmp_path, "be.dcm", data[: at + 4] + b"P\xf0" + data[at + 6 :])
    with pytest.raises(InvalidDicom, match=r"be.dcm: malformed DICOM file .*Unknown Value Representation.*\(0010,0010\)"):
        read_header(path)


def test_a_header_that_cannot_be_written_back_is_malformed_and_leaves_nothing(tmp_path):
    """A meta element renumbered to the group length reads, then fails when written: the
    file is refused as malformed (no value quoted) and no output or temp file is left."""
    data = CT.read_bytes().replace(b"\x02\x00\x03\x00UI", b"\x02\x00\x00\x00UI", 1)
    src = read_header(_write(tmp_path, "meta.dcm", data))
    deidentify_inplace(src.dataset, Options(clean_pixels="never"), Keys(b"k" * 32), pixels_cleaned=True)
    (tmp_path / "out").mkdir()
    with pytest.raises(InvalidDicom, match=r"meta.dcm: malformed DICOM \(.* cannot be written as it was read\)"):
        write_atomic(src, src.dataset, tmp_path / "out" / "x.dcm")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("implicit", [True, False])
def test_a_bare_dataset_without_pixels_is_accepted_when_it_describes_none(tmp_path, implicit):
    """Treatment planning systems export structure sets and plans without preamble and
    meta (pydicom's rtstruct.dcm is one).  Such a header is whole as far as anyone can
    tell, as the same object with meta would be; a bare header that describes an image
    whose pixels are missing was cut, and stays refused."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from safepacs.dicom import memio

    plan = pydicom.dcmread(get_testdata_file("rtplan.dcm"))
    image = pydicom.dcmread(CT, stop_before_pixels=True)
    encoded = {}
    for name, ds in (("plan", plan), ("image", image)):
        fp = DicomBytesIO()
        fp.is_implicit_VR, fp.is_little_endian = implicit, True
        write_dataset(fp, ds)
        encoded[name] = fp.getvalue()
    src = read_header(_write(tmp_path, "plan.dcm", encoded["plan"]))
    parsed = memio.parse(encoded["plan"])
    for ds in (src.dataset, parsed.dataset):
        assert ds.SOPInstanceUID == plan.SOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == ("1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1")
    out = tmp_path / "out.dcm"
    write_atomic(src, src.dataset, out)
    assert pydicom.dcmread(out).BeamSequence[0].BeamName == plan.BeamSequence[0].BeamName
    with pytest.raises(InvalidDicom, match="no DICM prefix"):
        read_header(_write(tmp_path, "cut.dcm", encoded["image"]))
    with pytest.raises(InvalidDicom, match="no DICM prefix"):
        memio.parse(encoded["image"])


@pytest.mark.parametrize("implicit", [True, False])
def test_files_and_in_memory_objects_read_a_bare_dataset_alike(tmp_path, implicit):
    """One parser for both doors (``deid`` reads files, the archive reads bytes): the same
    header, the pixel bytes by the same range, and what follows them as the same trailer."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from safepacs.dicom import memio

    ds = pydicom.dcmread(CT)
    assert 0xFFFCFFFC in ds  # the CT ends in dataset trailing padding, after its pixels
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, True
    write_dataset(fp, ds)
    data = fp.getvalue()
    src = read_header(_write(tmp_path, "bare.dcm", data))
    parsed = memio.parse(data)
    assert (src.pixel_start, src.pixel_end) == (parsed.pixel_start, parsed.pixel_end)
    assert src.pixel_end < len(data) and data[src.pixel_start : src.pixel_start + 4] == b"\xe0\x7f\x10\x00"
    assert [e.tag for e in src.dataset] == [e.tag for e in parsed.dataset]
    assert [e.tag for e in src.trailer] == [e.tag for e in parsed.trailer] == [0xFFFCFFFC]
    out = tmp_path / "out.dcm"
    write_atomic(src, src.dataset, out)
    assert pydicom.dcmread(out).PixelData == ds.PixelData


def _without_transfer_syntax(path: Path) -> bytes:
    """``path`` rewritten with its file meta lacking (0002,0010), the rest as it was."""
    import io

    ds = pydicom.dcmread(path)
    implicit, little = ds.original_encoding
    del ds.file_meta.TransferSyntaxUID
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=implicit, little_endian=little, enforce_file_format=False)
    return buf.getvalue()


@pytest.mark.parametrize(("sample", "expected"), [
    ("CT_small.dcm", "1.2.840.10008.1.2.1"), ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
    ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
])
def test_meta_without_a_transfer_syntax_gets_the_one_its_encoding_implies(tmp_path, sample, expected):
    """Some writers leave (0002,0010) out.  A native object's encoding is its whole transfer
    syntax, so it is read (by both doors), written out with that syntax declared, and its
    pixels come through unchanged."""
    from safepacs.dicom import memio

    data = _without_transfer_syntax(Path(get_testdata_file(sample)))
    assert b"\x02\x00\x10\x00" not in data[:400] and b"\x00\x02\x00\x10" not in data[:400]
    src = read_header(_write(tmp_path, "in.dcm", data))
    parsed = memio.parse(data)
    for ds in (src.dataset, parsed.dataset):
        assert ds.file_meta.TransferSyntaxUID == expected
    out = tmp_path / "out.dcm"
    deidentify_inplace(src.dataset, Options(accept_burned_in_risk=True), Keys(b"\x05" * 32))
    write_atomic(src, src.dataset, out)
    again, original = pydicom.dcmread(out), pydicom.dcmread(get_testdata_file(sample))
    assert again.file_meta.TransferSyntaxUID == expected
    assert (again.pixel_array == original.pixel_array).all()
    assert "PatientName" not in again or again.PatientName != original.PatientName


def test_compressed_pixels_without_a_transfer_syntax_are_refused(tmp_path):
    """Encapsulated pixel data does not say which codec made it: refused, with the reason."""
    from safepacs.dicom import memio

    data = _without_transfer_syntax(Path(get_testdata_file("JPEG2000.dcm")))
    with pytest.raises(InvalidDicom, match="no TransferSyntaxUID and its pixel data is compressed"):
        read_header(_write(tmp_path, "j2k.dcm", data))
    with pytest.raises(InvalidDicom, match="no TransferSyntaxUID and its pixel data is compressed"):
        memio.parse(data)


def test_bytes_written_atomically_or_not_at_all(tmp_path):
    target = tmp_path / "deltas" / "x.delta"
    write_bytes_atomic(target, b"sealed")  # its folder is made on the way
    assert target.read_bytes() == b"sealed"
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "not bytes")  # type: ignore[arg-type] - fails mid-write
    assert target.read_bytes() == b"sealed"  # the file there is untouched
    assert list(target.parent.iterdir()) == [target]  # and no temp file is left behind


def _with_compressed_icon(path: Path, fragment: bytes = b"\xff\x4f\xff\x51" + b"\x00" * 28) -> Path:
    """A JPEG 2000 object whose Icon Image Sequence holds encapsulated pixel data, as PS3.5
    A.4 has it for a compressed object (written so by scanners of several vendors)."""
    from pydicom.dataset import Dataset
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(get_testdata_file("JPEG2000.dcm"))
    icon = Dataset()
    icon.Rows = icon.Columns = 8
    icon.BitsAllocated = 8
    icon.PixelData = encapsulate([fragment])
    icon["PixelData"].VR = "OB"
    icon["PixelData"].is_undefined_length = True
    ds.IconImageSequence = [icon]
    ds.save_as(path)
    return path


def test_compressed_pixel_data_nested_in_an_icon_is_read(tmp_path):
    path = _with_compressed_icon(tmp_path / "icon.dcm")
    src = read_header(path)
    assert src.pixel_start is not None
    nested = src.dataset.IconImageSequence[0]["PixelData"]
    assert nested.is_undefined_length
    out = tmp_path / "o.dcm"
    write_atomic(src, src.dataset, out)
    assert pydicom.dcmread(out).PixelData == pydicom.dcmread(path).PixelData


def test_a_cut_fragment_in_a_nested_icon_is_malformed(tmp_path):
    path = _with_compressed_icon(tmp_path / "icon.dcm")
    data = bytearray(path.read_bytes())
    i = data.find(b"\xfe\xff\x00\xe0\x20\x00\x00\x00")  # the icon's 32-byte fragment item
    assert i > 0
    data[i + 4 : i + 8] = (0x7FFF).to_bytes(4, "little")  # longer than the file
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidDicom, match="fragment at byte"):
        read_header(path)


def _encoded_otherwise(sample: str, declared: str) -> bytes:
    """``sample`` with its dataset written in the other VR mode than its meta declares."""
    ds = pydicom.dcmread(get_testdata_file(sample))
    implicit = declared != "1.2.840.10008.1.2"  # the body says the opposite
    fp = pydicom.filebase.DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, True
    pydicom.filewriter.write_dataset(fp, ds)
    meta = pydicom.filebase.DicomBytesIO()
    ds.file_meta.TransferSyntaxUID = declared
    pydicom.filewriter.write_file_meta_info(meta, ds.file_meta)
    return b"\x00" * 128 + b"DICM" + meta.getvalue() + fp.getvalue()


@pytest.mark.parametrize("declared", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
def test_a_dataset_encoded_otherwise_than_its_meta_says_is_read(tmp_path, declared):
    """Writers in the wild declare implicit VR and write explicit, or the reverse; pydicom
    reads either by looking at the first element.  Explicit-under-implicit was refused as
    "needs 676675 bytes": it is now read whole (both doors), and written out consistent."""
    from safepacs.dicom import memio

    data = _encoded_otherwise("CT_small.dcm", declared)
    src = read_header(_write(tmp_path, "in.dcm", data))
    parsed = memio.parse(data)
    original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for ds in (src.dataset, parsed.dataset):
        assert ds.PatientName == original.PatientName
    out = tmp_path / "out.dcm"
    deidentify_inplace(src.dataset, Options(accept_burned_in_risk=True), Keys(b"\x05" * 32))
    write_atomic(src, src.dataset, out)
    again = pydicom.dcmread(out)
    assert (again.pixel_array == original.pixel_array).all()
    assert again.PatientName != original.PatientName
    assert again.ImagePositionPatient == original.ImagePositionPatient


def test_a_dicomdir_is_known_by_its_sop_class_whatever_its_name(tmp_path):
    """A CD's index lists every patient's name and ID: it is a media index, refused as one
    (the runners skip it) under any file name, and the reason quotes nothing from it."""
    ct = make_ct(name="MEDIA^INDEX^PATIENT")
    ct.PixelData = b"\\0" * 32
    ct.BitsAllocated, ct.BitsStored, ct.HighBit = 16, 12, 11
    ct.SamplesPerPixel, ct.PhotometricInterpretation, ct.PixelRepresentation = 1, "MONOCHROME2", 0
    ct.StudyID, ct.SeriesNumber, ct.InstanceNumber = "S1", 1, 1  # the records' Type 1 keys
    dicomdir = write_media(tmp_path / "cd", [ct])
    renamed = tmp_path / "index.dcm"
    renamed.write_bytes(dicomdir.read_bytes())
    for path in (dicomdir, renamed):
        with pytest.raises(MediaIndex, match="DICOMDIR media index") as err:
            read_header(path)
        assert "MEDIA" not in str(err.value) and "PID7734120" not in str(err.value)


@pytest.mark.parametrize(
    ("syntax", "size", "encapsulated"),
    [("1.2.840.10008.1.2.1", 1 << 21, False), ("1.2.840.10008.1.2.1", (1 << 20) + 1, False),
     ("1.2.840.10008.1.2", 1 << 21, False), ("1.2.840.10008.1.2.5", (1 << 21) + 3, True)],
    ids=["explicit", "explicit-odd", "implicit", "encapsulated-odd"],
)
def test_large_pixels_made_in_memory_are_written_as_pydicom_writes_them(tmp_path, syntax, size, encapsulated):
    """Cleaned pixels (loaded in the dataset, 1 MiB and more) go straight to the file after
    their header: the same bytes as pydicom's writer, odd lengths padded, an encapsulated
    value closed by its delimiter, and what sorts after the pixels still written."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID

    base = pydicom.dcmread(CT)
    if not encapsulated:  # an encapsulated syntax's header is explicit VR little endian too
        base.file_meta.TransferSyntaxUID = UID(syntax)
    base.save_as(tmp_path / "base.dcm", enforce_file_format=True)
    ds = pydicom.dcmread(tmp_path / "base.dcm")  # elements as read, in that transfer syntax
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    frame = bytes(range(256)) * (size // 256) + bytes(size % 256)
    ds.BitsAllocated = 8
    ds.PixelData = encapsulate([frame]) if encapsulated else frame
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = encapsulated
    ds.add_new(0x7FE0_0001, "OV", b"\x00" * 8)  # another pixel-group element (ExtendedOffsetTable)
    ds.add_new(0xFFFA_FFFA, "OB", b"\x01\x02")  # sorts after the pixels
    src = read_header(tmp_path / "base.dcm")
    src.pixel_start = src.pixel_end = None
    out = tmp_path / "out.dcm"
    write_atomic(src, ds, out)
    ds.save_as(tmp_path / "pydicom.dcm", enforce_file_format=True)
    assert out.read_bytes()[132:] == (tmp_path / "pydicom.dcm").read_bytes()[132:]


@pytest.mark.parametrize("writer", ["header copy", "engine"])
def test_an_output_the_disk_cannot_hold_fails_before_its_pixels_are_copied(tmp_path, monkeypatch, writer):
    import ctypes
    import errno

    from safepacs import files
    from safepacs.dicom import io as dicom_io

    asked: list[int] = []

    def full(fd: int, mode: int, offset: int, length: int) -> int:
        asked.append(length)
        ctypes.set_errno(errno.ENOSPC)
        return -1

    copied: list[int] = []
    monkeypatch.setattr(files, "_fallocate", full)
    monkeypatch.setattr(dicom_io, "copy_range", lambda *a: copied.append(1))
    src = read_header(CT)
    assert src.pixel_start is not None and src.pixel_end is not None
    out = tmp_path / "o.dcm"
    with pytest.raises(OSError) as raised:
        if writer == "engine":
            write_atomic(src, src.dataset, out)
        else:
            with open(CT, "rb") as fh:
                dicom_io.write_copy_atomic(out, b"head", fh, src.pixel_start,
                                           src.pixel_end - src.pixel_start, "x.dcm")
    assert raised.value.errno == errno.ENOSPC
    assert asked and asked[-1] >= src.pixel_end - src.pixel_start and not copied
    assert list(tmp_path.iterdir()) == []  # nor a temp file
