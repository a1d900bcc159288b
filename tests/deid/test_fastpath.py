"""The byte-level header path writes exactly what the engine's path writes, or steps aside."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian

from safepacs.deid import batch
from safepacs.deid.fastpath import FastDeid, eligible
from safepacs.deid.keys import Keys
from safepacs.deid.options import Options

KEYS = Keys(b"k" * 32)
HEADER_ONLY = Options(clean_pixels="never", accept_burned_in_risk=True)
OPTION_SETS = {
    "header only": HEADER_ONLY,
    "auto pixel rule": Options(),
    "refuse risky": Options(clean_pixels="never"),
    "retain most": Options(
        clean_pixels="never", accept_burned_in_risk=True, retain_uids=True,
        retain_device_identity=True, retain_patient_characteristics=True,
        retain_long_full_dates=True, retain_institution_identity=True,
    ),
}
PYDICOM_FILES = Path(get_testdata_file("CT_small.dcm")).parent
#: pydicom-data's larger files (compressed, colour, explicit UN, vendor oddities)
PYDICOM_DATA_FILES = Path(get_testdata_file("explicit_VR-UN.dcm")).parent


def _run(inputs: Path, out: Path, options: Options, *, fast: bool, monkeypatch) -> tuple[dict, dict, int]:
    """(reports by input, output bytes by path, files the fast path wrote)."""
    taken = []
    real = batch._process_fast

    def counted(path, job, fast_deid):  # type: ignore[no-untyped-def]
        result = real(path, job, fast_deid)
        if result is not None:
            taken.append(path)
        return result

    monkeypatch.setattr(batch, "_process_fast", counted)
    out.mkdir()
    job = batch.Job(out, None, options, KEYS.secret, None, time.time() - 1, fast=fast)
    results = batch.run(list(batch.discover(inputs)), job)
    reports = {r.input: (r.status, r.reason, r.output) for r in results}
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    return reports, files, len(taken)


def _assert_same(inputs: Path, tmp_path: Path, options: Options, monkeypatch) -> int:
    engine = _run(inputs, tmp_path / "engine", options, fast=False, monkeypatch=monkeypatch)
    fast = _run(inputs, tmp_path / "fast", options, fast=True, monkeypatch=monkeypatch)
    assert engine[2] == 0
    assert fast[0] == engine[0]
    assert fast[1].keys() == engine[1].keys()
    differing = [name for name in engine[1] if fast[1][name] != engine[1][name]]
    assert not differing
    return fast[2]


@pytest.mark.parametrize("name", list(OPTION_SETS))
def test_same_bytes_as_the_engine_on_the_synth_corpus(corpus, tmp_path, monkeypatch, name):
    inputs, _ = corpus
    taken = _assert_same(inputs, tmp_path, OPTION_SETS[name], monkeypatch)
    # the comparison is not vacuous: the fast path wrote files under every option set
    assert taken > 0
    if OPTION_SETS[name].accept_burned_in_risk:
        assert taken >= 150  # nearly all of the 200: they are plain little-endian objects


@pytest.mark.parametrize("name", ["header only", "retain most"])
@pytest.mark.parametrize("folder", [PYDICOM_FILES, PYDICOM_DATA_FILES], ids=["pydicom", "pydicom-data"])
def test_same_bytes_as_the_engine_on_pydicoms_odd_files(tmp_path, monkeypatch, name, folder):
    """pydicom's test files: big endian, deflated, no meta, truncated, odd charsets,
    private sequences, encapsulated pixels, standard elements written as UN; the fast path
    takes what it can do exactly."""
    taken = _assert_same(folder, tmp_path, OPTION_SETS[name], monkeypatch)
    assert taken >= (50 if folder == PYDICOM_FILES else 25)


def test_a_missing_input_is_reported_as_the_engine_reports_it(tmp_path):
    task = batch.Task(tmp_path / "gone.dcm", "gone.dcm")
    reports = []
    for fast in (False, True):
        job = batch.Job(tmp_path / f"out{fast}", None, HEADER_ONLY, KEYS.secret, None, fast=fast)
        batch._init_worker(job)
        reports.append(batch.process(task))
    assert reports[0] == reports[1]
    assert reports[1].status == "rejected" and "cannot read file" in (reports[1].reason or "")


def _header(path: Path, options: Options = HEADER_ONLY):  # type: ignore[no-untyped-def]
    data = path.read_bytes()
    return FastDeid(options, KEYS).header(data[: 64 * 1024], len(data))


def test_plain_file_is_taken_and_named_by_its_new_identifiers():
    path = Path(get_testdata_file("CT_small.dcm"))
    original = pydicom.dcmread(path)
    header = _header(path)
    assert header is not None
    assert header.sop_uid == KEYS.uid(original.SOPInstanceUID)
    assert header.study_uid == KEYS.uid(original.StudyInstanceUID)
    assert header.patient_id == KEYS.pseudonym("PatientID", original.PatientID)
    assert header.data[128:132] == b"DICM"
    assert str(original.PatientName).encode() not in header.data


def _rewritten(tmp_path: Path, **changes) -> Path:  # type: ignore[no-untyped-def]
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    out = tmp_path / "x.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "image_dfl.dcm"])
def test_other_encodings_take_the_engines_path(name):
    path = Path(get_testdata_file(name))
    tsuid = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert tsuid in (ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian)
    assert _header(path) is None


def test_data_after_the_pixels_takes_the_engines_path(tmp_path, monkeypatch):
    path = _rewritten(tmp_path)
    with open(path, "ab") as fh:  # (FFFC,FFFC) data set trailing padding, after the pixels
        fh.write(b"\xfc\xff\xfc\xffOB\x00\x00\x02\x00\x00\x00\x00\x00")
    job = batch.Job(tmp_path / "out", None, HEADER_ONLY, KEYS.secret, None, time.time() - 1)
    batch._init_worker(job)
    assert batch._worker_fast is not None
    assert batch._process_fast(path, job, batch._worker_fast) is None
    assert not (tmp_path / "out").exists()  # nothing written by the path that stepped aside


def test_a_header_longer_than_the_chunk_read_takes_the_engines_path(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.add_new(0x00090010, "LO", "SAFEPACS TEST")  # a vendor's big private blob
    ds.add_new(0x00091010, "OB", bytes(70 * 1024))
    path = tmp_path / "big.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    assert FastDeid(HEADER_ONLY, KEYS).header(data[: 64 * 1024], len(data)) is None
    assert FastDeid(HEADER_ONLY, KEYS).header(data, len(data)) is not None  # read whole: taken


def test_odd_length_kept_values_take_the_engines_path(tmp_path):
    path = _rewritten(tmp_path)
    data = bytearray(path.read_bytes())
    at = data.index(b"\x28\x00\x10\x00US")  # Rows, kept: make its length odd (and the file bad)
    data[at + 6] = 3
    assert FastDeid(HEADER_ONLY, KEYS).header(bytes(data), len(data)) is None


def test_unknown_character_set_takes_the_engines_path(tmp_path):
    assert _header(_rewritten(tmp_path, SpecificCharacterSet="ISO_IR 999")) is None


def test_options_that_need_values_are_not_eligible():
    assert eligible(HEADER_ONLY)
    for option in ("clean_descriptors", "clean_structured_content", "clean_graphics",
                   "retain_long_modified_dates", "retain_safe_private"):
        assert not eligible(Options(**{option: True}))
        with pytest.raises(ValueError):
            FastDeid(Options(**{option: True}), KEYS)


def test_no_fast_path_when_deltas_are_kept(tmp_path):
    job = batch.Job(tmp_path, None, HEADER_ONLY, KEYS.secret, tmp_path / "deltas")
    batch._init_worker(job)
    assert batch._worker_fast is None


@pytest.mark.parametrize("sop_class", ["1.2.840.113619.4.30", "1.2.840.10008.5.1.4.\x00\x001.7"])
def test_meta_sop_class_follows_the_dataset_as_written(tmp_path, monkeypatch, sop_class):
    """A vendor's private SOP class (or a garbled one) is replaced in the dataset; the file
    meta must carry the replacement too, as the engine writes it, not the original."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPClassUID = sop_class
    for tag in [t for t in ds.keys() if t > 0x7FE00010]:
        del ds[tag]  # data after the pixels would send the file the engine's way
    folder = tmp_path / "in"
    folder.mkdir()
    ds.save_as(folder / "x.dcm", enforce_file_format=False)
    assert _assert_same(folder, tmp_path, HEADER_ONLY, monkeypatch) == 1
    written = next((tmp_path / "fast").rglob("*.dcm"))
    out = pydicom.dcmread(written)
    assert out.file_meta.MediaStorageSOPClassUID == out.SOPClassUID
    assert sop_class.encode() not in written.read_bytes()


@pytest.mark.parametrize("seed", [1, 2])
def test_same_reports_and_bytes_as_the_engine_on_damaged_files(tmp_path, monkeypatch, seed):
    """Mutated headers are where a byte-level reader goes wrong: every one is either taken
    and written exactly as the engine writes it, or left to the engine.  70 copies of seven
    small test files with a few header bytes changed (lengths, VRs, tags, values, truncation:
    ``tools/mutate_compare.py``, which runs the same at length), one per file in each folder
    so that no two inputs of a run share a SOP Instance UID."""
    from tools.mutate_compare import rounds

    seeds = [PYDICOM_FILES / n for n in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "SC_rgb_rle.dcm",
                                         "JPEG2000.dcm", "reportsi.dcm", "nested_priv_SQ.dcm")]
    taken = 0
    for folder in rounds(seeds, 70, random.Random(seed), tmp_path, soft=False):
        work = tmp_path / "runs" / folder.name
        work.mkdir(parents=True)
        taken += _assert_same(folder, work, HEADER_ONLY, monkeypatch)
    assert taken > 0  # some survive their damage and go the fast way


def test_unlisted_sequence_inside_structured_content_goes_on_as_its_parent(tmp_path, monkeypatch):
    """Text inside an unlisted sequence within Content Sequence (dummied by the table) is
    dummied, not removed, on both paths: the report's tree keeps its shape."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for tag in [t for t in ds.keys() if t >= 0x7FE00010]:
        del ds[tag]
    measured, item = Dataset(), Dataset()
    measured.TextValue = "measured by Dr Zhang Wei"  # synthetic
    item.ValueType = "NUM"
    item.MeasuredValueSequence = Sequence([measured])  # unlisted in Table E.1-1
    ds.ContentSequence = Sequence([item])
    folder = tmp_path / "in"
    folder.mkdir()
    ds.save_as(folder / "sr.dcm", enforce_file_format=True)
    assert _assert_same(folder, tmp_path, HEADER_ONLY, monkeypatch) == 1
    out = pydicom.dcmread(next((tmp_path / "fast").rglob("*.dcm")))
    text = out.ContentSequence[0].MeasuredValueSequence[0].TextValue
    assert text and "Zhang" not in text


def test_a_control_character_in_a_value_the_engine_reads_is_re_encoded_as_the_engine_does(tmp_path, monkeypatch):
    """Python's decoding strips \\x1c-\\x1f as whitespace: a SOP Class UID padded with one
    is written back clean by the engine's path, and so by the fast path."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for tag in [t for t in ds.keys() if t >= 0x7FE00010]:
        del ds[tag]
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    element = b"\x08\x00\x16\x00UI\x1a\x00" + ds.SOPClassUID.encode() + b"\x00"
    assert data.count(element) == 1
    path.write_bytes(data.replace(element, element[:-1] + b"\x1e"))
    assert _assert_same(folder, tmp_path, HEADER_ONLY, monkeypatch) == 1
    written = pydicom.dcmread(next((tmp_path / "fast").rglob("*.dcm"))).get_item(0x00080016).value
    assert written == ds.SOPClassUID.encode() + b"\x00"


def test_a_compressed_icon_is_removed_alike_by_both_paths(tmp_path, monkeypatch):
    from tests.dicom.test_io import _with_compressed_icon

    inputs = tmp_path / "in"
    inputs.mkdir()
    _with_compressed_icon(inputs / "icon.dcm")
    _assert_same(inputs, tmp_path, HEADER_ONLY, monkeypatch)
    (written,) = [p for p in (tmp_path / "fast").rglob("*.dcm")]
    assert "IconImageSequence" not in pydicom.dcmread(written)  # Annex E: X


def test_an_encapsulated_pdf_is_decided_alike_by_both_paths(tmp_path, monkeypatch):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for tag in [t for t in ds.keys() if t >= 0x7FE00010]:
        del ds[tag]
    folder = tmp_path / "in"
    folder.mkdir()
    for name, mime in (("kept.dcm", "application/pdf"), ("named.dcm", "ZHANG^WEI")):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.{len(name)}{len(mime)}"
        ds.MIMETypeOfEncapsulatedDocument = mime
        ds.DocumentTitle = "Report for ZHANG WEI"
        ds.EncapsulatedDocument = b"%PDF-1.4 (ZHANG WEI)\n"
        ds.save_as(folder / name, enforce_file_format=True)
    _assert_same(folder, tmp_path, HEADER_ONLY, monkeypatch)  # (the fast path may decline them)
    kinds = sorted(str(pydicom.dcmread(p).MIMETypeOfEncapsulatedDocument) for p in (tmp_path / "fast").rglob("*.dcm"))
    assert kinds == ["ANONYMIZED", "application/pdf"]
