"""Text in another character set than declared (UTF-8 declared as GB18030, an everyday
mislabel in Chinese hospitals, and the reverse) is read as written: names in it are
scrubbed, the output declares the set it is in, restore gives the original bytes back, and
verify-deid finds such a name left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from safepacs.deid.keys import Keys
from safepacs.deid.mislabelled import read_as_written, standard_terms, written_in
from tests.conftest import deid_report

NAME, GIVEN = "张", "伟明"


def _file(charset: str | None, codec: str, *, in_sequence: bool = True, name: tuple[str, str] = (NAME, GIVEN),
          item_codec: str | None = None) -> bytes:
    """A CR header whose text is encoded with ``codec`` while it declares ``charset``."""
    family, given = name
    chest = "胸" if _encodable("胸", codec) else "Chest"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID = "CR", "MIS-20261130"
    if charset:
        ds.SpecificCharacterSet = charset
    ds.add_new(0x00100010, "PN", f"{family}^{given}".encode(codec))
    ds.add_new(0x00081030, "LO", f"{chest} {family}{given}".encode(codec))  # StudyDescription
    if in_sequence:
        item = Dataset()
        item.add_new(0x00321060, "LO", f"{family}{given} {chest}".encode(item_codec or codec))  # RequestedProcedureDescription
        ds.RequestAttributesSequence = Sequence([item])
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _encodable(text: str, codec: str) -> bool:
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def _read(data: bytes) -> Dataset:
    return pydicom.dcmread(BytesIO(data))


@pytest.mark.parametrize(("charset", "codec", "name", "written"), [
    ("GB18030", "utf-8", (NAME, GIVEN), "ISO_IR 192"),
    ("GBK", "utf-8", (NAME, GIVEN), "ISO_IR 192"),
    ("ISO_IR 192", "gb18030", (NAME, GIVEN), "GB18030"),
    ("ISO_IR 192", "latin-1", ("MÜLLER", "JÜRGEN"), "ISO_IR 100"),
])
def test_the_set_text_is_written_in_is_recognised(charset, codec, name, written):
    assert written_in(_read(_file(charset, codec, name=name))) == written


@pytest.mark.parametrize(("charset", "codec"), [
    ("GB18030", "gb18030"),  # genuine
    ("ISO_IR 192", "utf-8"),  # declared right
    ("ISO_IR 100", "utf-8"),  # a single-byte set reads the same bytes alike everywhere
    (None, "utf-8"),
    ("ISO 2022 IR 87", "iso2022_jp"),  # escape sequences: text in the declared set
])
def test_anything_else_is_left_as_declared(charset, codec):
    ds = _read(_file(charset, codec, name=("山田", "太郎")))
    assert written_in(ds) is None
    assert read_as_written(ds) is None
    assert ds.get("SpecificCharacterSet") == charset


def test_code_extensions_without_escapes_are_left_as_declared():
    """Text without escapes decodes in the first set, here single-byte: alike everywhere."""
    ds = _read(_file(["ISO 2022 IR 6", "ISO 2022 IR 149"], "euc_kr", name=("홍", "길동")))
    assert written_in(ds) is None


def test_values_in_two_sets_are_read_byte_for_byte():
    """UTF-8 names with a GB18030 department: no one set reads them all, Latin-1 reads each
    byte as one character, so the same bytes read alike wherever they are."""
    ds = _read(_file("GB18030", "utf-8"))
    ds.add_new(0x00081040, "LO", "放射科".encode("gb18030"))  # InstitutionalDepartmentName
    assert written_in(_read(_write(ds))) == "ISO_IR 100"


@pytest.mark.parametrize(("declared", "terms"), [
    ("GB2312", ["GB18030"]), ("gb18030", ["GB18030"]), ("UTF-8", ["ISO_IR 192"]), ("utf8", ["ISO_IR 192"]),
    ("ISO-IR 192", ["ISO_IR 192"]), ("ISO_IR192", ["ISO_IR 192"]), ("iso ir 100", ["ISO_IR 100"]),
    ("EUC-KR", ["ISO 2022 IR 149"]), (["", "ISO2022 IR 87"], ["", "ISO 2022 IR 87"]),
    ("GB18030", None), ("ISO_IR 100", None), ("Big5", None),
])
def test_declarations_spelled_otherwise_mean_their_defined_terms(declared, terms):
    ds = Dataset()
    ds.SpecificCharacterSet = declared
    assert standard_terms(ds) == terms


def test_a_declaration_that_means_nothing_known_is_refused(tmp_path: Path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.dcm").write_bytes(_file("Big5", "big5", name=("陳", "大文")))
    run = _cli("deid", tmp_path / "in", tmp_path / "out", "--key-file", tmp_path / "k.key")
    assert run.returncode == 1
    report = json.loads(deid_report(tmp_path / "out").read_text())
    assert report["status"] == "rejected" and "unknown SpecificCharacterSet term 'Big5'" in report["reason"]


def test_utf8_text_in_a_sequence_of_a_genuine_gb18030_file_is_found(tmp_path: Path):
    """Two systems, one file: the modality's own text in GB18030, the worklist's request in
    UTF-8.  The name has other bytes in each, so no reading matches it in both: the text
    that would be cleaned is removed."""
    original = _file("GB18030", "gb18030", item_codec="utf-8")
    assert written_in(_read(original)) == "ISO_IR 100"
    out = _read(_deid_without_the_name(tmp_path, original))  # text not cleanable across sets: removed
    assert "StudyDescription" not in out
    assert "RequestedProcedureDescription" not in out.RequestAttributesSequence[0]


def _write(ds: Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out)
    return out.getvalue()


def test_reading_as_utf8_is_done_once_and_remembered():
    ds = _read(_file("GB18030", "utf-8"))
    first = read_as_written(ds)
    assert first is not None and first[1] == ["GB18030"]
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert read_as_written(ds) == first  # the engine asks again after the caller did
    assert str(ds.PatientName) == f"{NAME}^{GIVEN}"
    assert ds.RequestAttributesSequence[0].RequestedProcedureDescription == f"{NAME}{GIVEN} 胸"


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "safepacs", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def _deid_without_the_name(tmp_path: Path, original: bytes, *flags: object) -> bytes:
    """``safepacs deid --clean-descriptors`` of ``original`` (key ``tmp_path/k.key``, output
    under ``tmp_path/out``): the output's bytes, once no byte form of the name is in them."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.dcm").write_bytes(original)
    run = _cli("deid", tmp_path / "in", tmp_path / "out", "--key-file", tmp_path / "k.key",
               "--clean-descriptors", *flags)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(deid_report(tmp_path / "out").read_text())
    data = (tmp_path / "out" / report["output"]).read_bytes()
    for secret in (NAME, GIVEN):
        for codec in ("utf-8", "gb18030"):
            assert secret.encode(codec) not in data
    return data


@pytest.mark.parametrize(("charset", "codec", "written"), [
    ("GB18030", "utf-8", "ISO_IR 192"), ("ISO_IR 192", "gb18030", "GB18030"),
    ("GB2312", "gb18030", "GB18030"), ("UTF-8", "utf-8", "ISO_IR 192"), ("UTF-8", "gb18030", "GB18030")])
def test_deid_scrubs_the_name_restores_the_bytes_and_verify_agrees(tmp_path: Path, charset, codec, written):
    original = _file(charset, codec)
    key = tmp_path / "k.key"
    out = _read(_deid_without_the_name(tmp_path, original, "--delta-dir", tmp_path / "deltas"))
    assert out.SpecificCharacterSet == written
    assert out.StudyDescription.startswith("胸 ")
    assert out.RequestAttributesSequence[0].RequestedProcedureDescription.endswith(" 胸")

    verify = _cli("verify-deid", tmp_path / "in", tmp_path / "out")
    assert verify.returncode == 0, verify.stdout[-2000:]

    back = _cli("restore", tmp_path / "out", tmp_path / "deltas", tmp_path / "back", "--key-file", key)
    assert back.returncode == 0, back.stdout + back.stderr
    [restored] = (tmp_path / "back").rglob("*.dcm")
    assert restored.read_bytes() == original


@pytest.mark.parametrize("with_key", [False, True])
def test_verify_finds_a_name_left_in_mislabelled_text(tmp_path: Path, with_key: bool):
    """Another tool's output: the name kept inside new UTF-8 text that still declares
    GB18030.  Read as declared, the name decodes there otherwise than in PatientName.  With
    the key (the originals' dates are then gathered in the same reading), alike."""
    (tmp_path / "orig").mkdir()
    (tmp_path / "deid").mkdir()
    original = _file("GB18030", "utf-8", in_sequence=False)
    (tmp_path / "orig" / "a.dcm").write_bytes(original)
    ds = _read(original)
    ds.add_new(0x00081030, "LO", f"复查 {NAME}{GIVEN}".encode())  # StudyDescription, as bytes
    del ds.PatientName
    ds.PatientID = "ANON"
    ds.save_as(tmp_path / "deid" / "a.dcm")
    key = ("--key-file", tmp_path / "k.key") if with_key else ()
    if with_key:
        Keys.from_file(tmp_path / "k.key", create=True)
    verify = _cli("verify-deid", tmp_path / "orig", tmp_path / "deid", *key)
    assert verify.returncode == 1, verify.stdout[-2000:]
    assert "StudyDescription" in verify.stdout
