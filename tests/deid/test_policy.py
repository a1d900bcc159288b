"""The safe private list keeps a listed element only when its value has the listed form."""

from __future__ import annotations

import struct
from io import BytesIO

import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from safepacs.deid.engine import deidentify
from safepacs.deid.options import Options
from safepacs.deid.policy import _safe_element, load_policy, safe_private_tags, value_fits
from tests.conftest import make_ct

_SAFE = Options(retain_safe_private=True)


def _entry(creator: str, group: int, offset: int):  # type: ignore[no-untyped-def]
    entry = load_policy().safe_private_element(creator, group, offset)
    assert entry is not None
    return entry


@pytest.mark.parametrize(
    ("value", "vr", "fits"),
    [
        ("12.5", "DS", True),
        ("1.5e2\\-3", "DS", True),
        (b"12.5 ", "UN", True),  # read without its VR: as the listed DS
        (b"Wangfang", "UN", False),
        (b"LI XIA", "UN", False),
        ("", "DS", True),
    ],
)
def test_a_decimal_string_entry_holds_numbers_only(value, vr, fits) -> None:
    table_speed = _entry("GEMS_ACQU_01", 0x0019, 0x23)
    assert value_fits(value, table_speed, vr) is fits


def test_a_short_string_entry_holds_its_form_only() -> None:
    pitch = _entry("GEMS_PARM_01", 0x0043, 0x27)
    assert value_fits("1.375:1", pitch, "SH")
    assert value_fits("/0.984:1 ", pitch, "SH")
    assert not value_fits("Lixia", pitch, "SH")
    assert not value_fits("1.375:1 ZHANG", pitch, "SH")


def test_a_code_entry_holds_its_listed_codes_only() -> None:
    directionality = _entry("SIEMENS MR HEADER", 0x0019, 0x0D)
    assert value_fits("ISOTROPIC", directionality, "CS")
    assert not value_fits("LIXIA", directionality, "CS")  # a valid CS, and a name
    assert not value_fits(b"WANG", directionality, "UN")


def test_binary_numbers_must_not_spell_a_word() -> None:
    gradient = _entry("SIEMENS MR HEADER", 0x0019, 0x0E)  # FD
    assert value_fits(struct.pack("<3d", 0.0, -0.7071, 0.7071), gradient, "UN")
    assert value_fits([0.0, -0.7071, 0.7071], gradient, "FD")
    assert not value_fits(b"Wangfang", gradient, "UN")  # eight letters: one finite double
    assert not value_fits(struct.unpack("<d", b"Wangfang")[0], gradient, "FD")
    assert not value_fits(b"\x00" * 12, gradient, "UN")  # not a whole number of doubles
    assert not value_fits(float("nan"), gradient, "FD")
    b_factor = _entry("Philips Imaging DD 001", 0x2001, 0x03)  # FL
    assert value_fits(struct.unpack("<f", struct.pack("<f", 1000.0))[0], b_factor, "FL")
    assert not value_fits(struct.unpack("<f", b"LIXI")[0], b_factor, "FL")


def test_a_text_entry_without_a_form_is_refused_when_the_list_loads() -> None:
    with pytest.raises(ValueError, match="without a 'form'"):
        _safe_element("ACME", {"name": "Operator", "vr": ["LO"]})
    assert _safe_element("ACME", {"name": "Speed", "vr": ["DS"]}).form is None


def _with_private(ds: Dataset) -> Dataset:
    ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x27, "SH", "WANGFANG")
    ds.private_block(0x0043, "GEMS_PARM_01").add_new(0x39, "IS", "4")
    ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0D, "CS", "ISOTROPIC")
    return ds


def test_retain_safe_private_removes_a_listed_element_that_holds_a_name(keys) -> None:
    out, _ = deidentify(_with_private(make_ct()), _SAFE, keys)
    block = out.private_block(0x0043, "GEMS_PARM_01")
    assert block.get_tag(0x27) not in out  # ScanPitchRatio holding a name: removed
    assert block[0x39].value == 4  # SliceInfo, a number: kept
    assert out.private_block(0x0019, "SIEMENS MR HEADER")[0x0D].value == "ISOTROPIC"


def test_an_implicit_vr_file_s_listed_element_is_read_as_its_listed_vr(keys) -> None:
    """Written without VRs, a safe element's value is whatever bytes the writer put there:
    a name in a decimal-string slot goes too."""
    ds = _with_private(make_ct())
    ds.private_block(0x0019, "GEMS_ACQU_01").add_new(0x24, "LO", "Wangfang")  # MidScanTime
    buf = BytesIO()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(buf, enforce_file_format=True)
    read = pydicom.dcmread(BytesIO(buf.getvalue()))
    kept = safe_private_tags(read, load_policy())
    assert 0x00191023 in kept  # TableSpeed 12.5 of make_ct: a number
    assert 0x00191024 not in kept
    out, _ = deidentify(read, _SAFE, keys)
    assert 0x00191024 not in out and 0x00191023 in out
