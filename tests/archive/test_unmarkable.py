"""Copies whose pixels cannot carry the forensic watermark as they are stored: a palette
colour ultrasound is marked in the RGB it shows; a one-bit segmentation goes out to an
identified reader with the private mark alone, and to nobody whose level has none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from safepacs.archive.service import Archive
from safepacs.render.issuance import trace
from safepacs.render.render import PRIVATE_GROUP, Unmarkable
from tests.archive.test_masking import read
from tests.people import admin, clinician, person


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("unmarkable")
    archive, _ = Archive.create(root / "data")
    stored = {name: archive.ingest(Path(get_testdata_file(name)).read_bytes(), source="test")
              for name in ("gdcm-US-ALOKA-16.dcm", "liver.dcm")}
    doc, _ = clinician(archive, "doc")
    res, res_token = person(archive, "res", "researcher")
    sec = admin(archive)
    until = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=30)
    project = archive.access.grants.create_project(sec, "P", "synthetic", until)
    archive.access.grants.add_member(sec, project.id, res.account_id)
    archive.access.grants.add_cohort(sec, project.id, study_uids=[s.study_uid for s in stored.values()])
    archive.res_token = res_token  # type: ignore[attr-defined]
    yield archive, stored, doc, res, root
    archive.close()


def _trace(archive: Archive, data: bytes, path: Path):  # type: ignore[no-untyped-def]
    path.write_bytes(data)
    return trace(path, archive.masking.keys.watermark, archive.masking.issuances.lookup)


def test_a_palette_colour_copy_is_marked_in_rgb_and_traced(site, tmp_path):
    archive, stored, doc, res, _ = site
    sop = stored["gdcm-US-ALOKA-16.dcm"].sop_instance_uid
    for who, private in ((doc, True), (res, False)):
        data = archive.read_instance(sop, principal=who)
        ds = read(data)
        assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
        assert "RedPaletteColorLookupTableDescriptor" not in ds
        assert ds.pixel_array.shape == (480, 640, 3)
        found = _trace(archive, data, tmp_path / f"{who.username}.dcm")
        assert found is not None and found.copy.username == who.username
        assert found.found_by == ("pixels+private" if private else "pixels")


def test_a_one_bit_segmentation_goes_out_with_its_private_mark_only_where_a_level_has_one(site, tmp_path):
    archive, stored, doc, res, _ = site
    sop = stored["liver.dcm"].sop_instance_uid
    data = archive.read_instance(sop, principal=doc)  # identified: pixels as stored, private mark
    ds = read(data)
    assert ds.BitsAllocated == 1 and (PRIVATE_GROUP << 16 | 0x0010) in ds
    found = _trace(archive, data, tmp_path / "seg.dcm")
    assert found is not None and found.copy.username == "doc" and found.found_by == "private"
    with pytest.raises(Unmarkable, match="cannot be watermarked"):
        archive.read_instance(sop, principal=res)  # pseudonymised: no mark possible, refused


def test_the_refusal_reaches_a_dicomweb_client_as_a_clear_error(site):
    from fastapi.testclient import TestClient

    from safepacs.api import create_app

    archive, stored, _, _, _ = site
    seg = stored["liver.dcm"]
    series = archive.metadata(seg.sop_instance_uid, principal=site[3]).SeriesInstanceUID
    url = f"/dicomweb/studies/{seg.study_uid}/series/{series}/instances/{seg.sop_instance_uid}"
    with TestClient(create_app(archive), raise_server_exceptions=False) as client:
        r = client.get(url, headers={"Authorization": f"Bearer {archive.res_token}"})
    assert r.status_code == 500
    assert "cannot be watermarked" in r.json()["error"] and "internal error" not in r.text
