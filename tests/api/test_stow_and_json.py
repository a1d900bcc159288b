"""STOW-RS response status and body; DICOM JSON with bulk data links and intact CJK names."""

from __future__ import annotations

import json

from pydicom import Dataset

from safepacs.api import dicomjson, stow
from safepacs.archive.errors import Conflict
from safepacs.archive.service import Stored
from safepacs.errors import InvalidDicom, RejectedFile


def stored(n: int) -> Stored:
    return Stored(status="stored", study_uid="2.25.1", series_uid="2.25.2", sop_instance_uid=f"2.25.3{n}",
                  sop_class_uid="1.2.840.10008.5.1.4.1.1.2", original_sop_instance_uid_hash="h")


def test_status_codes():
    ok, bad = stored(1), stow.Failure(stow.CANNOT_UNDERSTAND)
    assert stow.status_code([ok, ok]) == 200
    assert stow.status_code([ok, bad]) == 202
    assert stow.status_code([bad, bad]) == 409


def test_failure_reasons_by_error():
    assert stow.failure_reason(Conflict("x")) == 0x0111
    assert stow.failure_reason(InvalidDicom("x")) == 0xC000
    assert stow.failure_reason(RejectedFile("x")) == 0x0124
    assert stow.failure_reason(OSError(28, "no space")) == 0xA700
    assert stow.failure_reason(RuntimeError("x")) == 0x0110


def test_response_lists_stored_with_retrieve_url_and_failed_with_reason():
    body = stow.response([stored(1), stow.Failure(0xC000)], "http://h/dicomweb", None)
    ok = body["00081199"]["Value"][0]
    assert ok["00081155"]["Value"] == ["2.25.31"]
    assert ok["00081190"]["Value"] == ["http://h/dicomweb/studies/2.25.1/series/2.25.2/instances/2.25.31"]
    assert body["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]


def test_json_keeps_chinese_names_and_links_bulk_data():
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Zhang^Wei=张^伟"
    ds.Rows = 2
    ds.BitsAllocated = 16
    ds.add_new(0x00091010, "OB", b"\x00" * 5000)
    ds.add_new(0x00091011, "OB", b"\x01\x02")
    obj = dicomjson.to_json(ds, bulk_base="http://h/i")
    dicomjson.add_bulk_pixel_link(obj, (0x7FE00010, "OW"), "http://h/i")
    text = dicomjson.dumps([obj]).decode("utf-8")
    assert "张^伟" in text
    back = json.loads(text)[0]
    assert back["00100010"]["Value"][0]["Ideographic"] == "张^伟"
    assert back["00091010"] == {"vr": "OB", "BulkDataURI": "http://h/i/bulkdata/00091010"}
    assert back["00091011"]["InlineBinary"] == "AQI="
    assert back["7FE00010"] == {"vr": "OW", "BulkDataURI": "http://h/i/bulkdata/7FE00010"}


def test_pixel_link_names_the_element_the_object_has_and_none_without_pixels():
    float_map, header_only = {}, {}
    dicomjson.add_bulk_pixel_link(float_map, (0x7FE00008, "OF"), "http://h/i")
    dicomjson.add_bulk_pixel_link(header_only, None, "http://h/i")
    assert float_map == {"7FE00008": {"vr": "OF", "BulkDataURI": "http://h/i/bulkdata/7FE00008"}}
    assert header_only == {}
