"""Site-defined access levels end to end over real HTTP: the security administrator defines
``teaching``, grants it to a third party, whose WADO-RS copies and metadata then hold only
its keep list; the other administrators cannot change it; a bad definition changes nothing;
a change reaches the very next response (no copy of the old definition is served); a level
in use cannot be deleted; everything is in the audit trail."""

from __future__ import annotations

import io
import json

import httpx
import pydicom
import pytest
from sqlalchemy import select

from safepacs.api import create_app
from safepacs.archive.service import Archive
from safepacs.audit.models import AuditEntry
from safepacs.dicom.memio import to_bytes
from safepacs.render.models import Issuance
from tests.access.http import serving
from tests.api.test_levels import _chest
from tests.api.test_levels import objects as _objects
from tests.people import person
from tests.render.helpers import read

KEEP = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "StudyDate",
        "Modality", "BodyPartExamined", "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
        "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PixelData"]
TEACHING = {"header": "deidentified", "uids": "fresh", "dates": "remove", "pixels": "cleaned",
            "watermark": True, "keep": KEEP, "description": "teaching files"}
#: what the renderer itself adds to every de-identified copy (PS3.15 E.1: the method used)
MARKERS = {0x00120062, 0x00120063, 0x00120064, 0x00280303}
MULTIPART = 'multipart/related; type="application/dicom"'


def _image(seed: int, size: int = 256) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(_chest(seed, size)))
    ds.BodyPartExamined = "CHEST"
    return to_bytes(ds)


class Site:
    base = ""

    def __init__(self, root) -> None:
        self.archive, _ = Archive.create(root / "data")
        got = self.archive.ingest(_image(7), source="test")
        self.stored = (got.study_uid, got.series_uid, got.sop_instance_uid)
        a = self.archive
        self.sec, self.sec_token = person(a, "lvl-sec", "security_admin")
        self.sys, self.sys_token = person(a, "lvl-sys", "system_admin")
        self.aud, self.aud_token = person(a, "lvl-aud", "security_auditor")
        self.tp, self.tp_token = person(a, "lvl-tp", "third_party")

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=60, headers={"Authorization": f"Bearer {token}"})

    def url(self, who, suffix: str = "") -> str:
        st, se, so = (self.archive.masking.outward(who, u) for u in self.stored)
        return f"/dicomweb/studies/{st}/series/{se}/instances/{so}{suffix}"

    def levels(self) -> dict[str, dict]:
        with self.client(self.sec_token) as c:
            r = c.get("/api/levels")
        assert r.status_code == 200, r.text
        return {lv["name"]: lv for lv in r.json()}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("site-levels"))
    with serving(create_app(s.archive)) as url:
        s.base = url
        yield s
    s.archive.close()


@pytest.fixture(scope="module")
def teaching(site) -> int:
    """``teaching`` defined by the security administrator and granted to the third party."""
    with site.client(site.sec_token) as c:
        r = c.put("/api/levels/teaching", json=TEACHING)
        assert r.status_code == 200, r.text
        g = c.post("/api/grants", json={"account_id": site.tp.account_id, "study_uids": [site.stored[0]],
                                        "level": "teaching"})
    assert g.status_code == 201, g.text
    return g.json()["id"]


def _allowed(keep: list[str]) -> set[int]:
    return {int(pydicom.datadict.tag_for_keyword(k)) for k in keep} | MARKERS


def test_third_party_gets_only_the_keep_list_of_the_site_level(site, teaching):
    with site.client(site.tp_token) as c:
        data = _objects(c.get(site.url(site.tp)))[0]
        meta = c.get(site.url(site.tp, "/metadata"))
    ds = read(data)
    assert {int(e.tag) for e in ds} <= _allowed(KEEP)
    assert {"Modality", "BodyPartExamined", "PixelData"} <= {e.keyword for e in ds}
    assert ds.BodyPartExamined == "CHEST" and ds.StudyDate == ""  # dates: remove
    assert not {str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)} & set(site.stored)  # fresh UIDs
    assert "PatientID" not in ds and "PatientName" not in ds
    assert meta.status_code == 200
    keys = {int(k, 16) for k in meta.json()[0]}
    assert keys <= _allowed(KEEP) and 0x00180015 in keys
    # watermarked to the reader: an issuance names them at the site level
    with site.archive.access.ctx.engine.connect() as conn:
        issued = conn.execute(select(Issuance.username, Issuance.level)).all()
    assert ("lvl-tp", "teaching") in {tuple(r) for r in issued}


@pytest.mark.parametrize("who", ["sys", "aud", "tp"])
def test_other_roles_cannot_define_or_delete_levels(site, teaching, who):
    before = site.levels()["teaching"]
    with site.client(getattr(site, f"{who}_token")) as c:
        put = c.put("/api/levels/teaching", json=dict(TEACHING, keep=["Modality", "PixelData"]))
        new = c.put("/api/levels/someone-elses", json=TEACHING)
        delete = c.delete("/api/levels/teaching")
        listing = c.get("/api/levels")
    assert put.status_code == new.status_code == delete.status_code == 403
    assert listing.status_code == (403 if who == "tp" else 200)  # administrators read the policy
    assert site.levels()["teaching"] == before and "someone-elses" not in site.levels()


@pytest.mark.parametrize(("name", "body"), [
    ("teaching", dict(TEACHING, colour="magenta-x")),  # unknown rule
    ("teaching", dict(TEACHING, uids="forever-x")),  # unknown value
    ("teaching", dict(TEACHING, keep=["NoSuchKeyword"])),
    ("anonymised", TEACHING),  # a built-in name
    ("teaching", ["header", "deidentified"]),  # not an object
    ("Teaching!", TEACHING),  # not a level name
])
def test_invalid_definitions_are_refused_with_400_and_nothing_changes(site, teaching, name, body):
    before = site.levels()
    with site.client(site.sec_token) as c:
        r = c.put(f"/api/levels/{name}", json=body)
        history = c.get("/api/levels/teaching/history").json()
    assert r.status_code == 400, r.text
    assert not any(v in r.text for v in ("NoSuchKeyword", "magenta-x", "forever-x"))  # values never echoed
    assert site.levels() == before and len(history) == before["teaching"]["version"]


def test_a_changed_level_reaches_the_next_response_not_a_cached_copy(site, teaching):
    url = site.url(site.tp)
    with site.client(site.tp_token) as c:
        first = read(_objects(c.get(url))[0])
        assert "BodyPartExamined" in first
        assert len(site.archive.masking.cache) > 0  # the render is cached under the old definition
        with site.client(site.sec_token) as sec:
            narrower = [k for k in KEEP if k != "BodyPartExamined"]
            r = sec.put("/api/levels/teaching", json=dict(TEACHING, keep=narrower))
        assert r.status_code == 200 and r.json()["changed"]
        second = read(_objects(c.get(url))[0])
        meta = c.get(url + "/metadata").json()[0]
        assert "BodyPartExamined" not in second and "00180015" not in meta
        assert {int(e.tag) for e in second} <= _allowed(narrower)
        with site.client(site.sec_token) as sec:  # and back: the wider list again
            assert sec.put("/api/levels/teaching", json=TEACHING).status_code == 200
        assert "BodyPartExamined" in read(_objects(c.get(url))[0])


def test_deleting_a_level_in_use_is_refused(site, teaching):
    with site.client(site.sec_token) as c:
        assert c.delete("/api/levels/teaching").status_code == 409
        assert c.delete("/api/levels/anonymised").status_code == 400
        assert c.delete("/api/levels/never-defined").status_code == 404
        assert c.put("/api/levels/spare", json=TEACHING).status_code == 200
        assert c.delete("/api/levels/spare").status_code == 200
    assert "teaching" in site.levels() and "spare" not in site.levels()


def test_unknown_or_unfit_level_at_grant_time_is_refused(site, teaching):
    with site.client(site.sec_token) as c:
        grant = c.post("/api/grants", json={"account_id": site.tp.account_id, "study_uids": [site.stored[0]],
                                            "level": "no-such-level"})
        project = c.post("/api/projects", json={"code": "LV1", "purpose": "t", "level": "no-such-level",
                                                "expires_at": "2099-01-01T00:00:00"})
        identity = {"header": "original", "uids": "original", "dates": "original", "pixels": "original",
                    "watermark": True}
        assert c.put("/api/levels/court-copy", json=identity).status_code == 200
        identity_project = c.post("/api/projects", json={"code": "LV2", "purpose": "t", "level": "court-copy",
                                                         "expires_at": "2099-01-01T00:00:00"})
        ok = c.post("/api/projects", json={"code": "LV3", "purpose": "t", "level": "teaching",
                                           "expires_at": "2099-01-01T00:00:00"})
    assert grant.status_code == project.status_code == identity_project.status_code == 400
    assert "unknown access level" in grant.text and "identity" in identity_project.text
    assert ok.status_code == 201


def test_level_changes_are_in_the_audit_trail_without_phi(site, teaching):
    for token in (site.sys_token, site.aud_token):  # refusals of this test's own (any order, any worker)
        with site.client(token) as c:
            assert c.put("/api/levels/audit-probe", json=TEACHING).status_code == 403
    site.archive.audit.flush()
    with site.archive.access.ctx.engine.connect() as conn:
        entries = [json.loads(bytes(e)) for e in conn.scalars(select(AuditEntry.entry).order_by(AuditEntry.idx))]
    changes = [e for e in entries if e.get("route", "").startswith(("PUT /api/levels/{name}",
                                                                    "DELETE /api/levels/{name}"))
               and e.get("level")]
    assert changes, "no level change was audited"
    created = [e for e in changes if e["level"] == "teaching" and e["detail"].get("version") == 1]
    assert created and created[0]["user"] == "lvl-sec" and created[0]["outcome"] == 0
    refused = [e for e in entries if "level.manage" in e.get("reason", "")]
    assert {e["user"] for e in refused} >= {"lvl-sys", "lvl-aud"}
    original = read(_image(7))
    text = json.dumps(changes)
    assert str(original.PatientID) not in text and str(original.StudyInstanceUID) not in text
