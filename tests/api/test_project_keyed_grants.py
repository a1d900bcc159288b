"""Project-keyed levels over real HTTP: ``POST /api/grants`` at ``pseudonymised`` (or a site
level that re-keys per project) is a 400 saying a research project is needed, and stores
nothing; a third party holding such a grant anyway (made by an older version) is refused
every read exactly as for a study that does not exist (404, an empty search), never a 500,
and each refusal is in the audit trail."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from safepacs.access.models import Grant, GrantStudy
from safepacs.api import create_app
from safepacs.archive.service import Archive
from safepacs.audit.events import MINOR_FAILURE
from safepacs.audit.models import AuditEntry
from tests.access.http import serving
from tests.api.test_site_levels import _image
from tests.people import person

KEYED = {"header": "deidentified", "uids": "project", "dates": "remove", "pixels": "cleaned",
         "watermark": True}
MISSING = "2.25.999999999999999999"


class Site:
    base = ""

    def __init__(self, root) -> None:
        self.archive, _ = Archive.create(root / "data")
        got = self.archive.ingest(_image(11), source="test")
        self.stored = (got.study_uid, got.series_uid, got.sop_instance_uid)
        self.sec, self.sec_token = person(self.archive, "pk-sec", "security_admin")
        self.tp, self.tp_token = person(self.archive, "pk-tp", "third_party")

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=60, headers={"Authorization": f"Bearer {token}"})

    def grants(self) -> tuple[int, int]:
        with Session(self.archive.access.ctx.engine) as s:
            return (s.scalar(select(func.count()).select_from(Grant)),
                    s.scalar(select(func.count()).select_from(GrantStudy)))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("project-keyed"))
    with serving(create_app(s.archive)) as url:
        s.base = url
        yield s
    s.archive.close()


@pytest.fixture(scope="module")
def old_grant(site) -> int:
    """A pseudonymised grant to the third party, as an older version stored it."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with Session(site.archive.access.ctx.engine) as s, s.begin():
        row = Grant(account_pk=site.tp.account_id, level="pseudonymised", all_studies=False,
                    starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(days=7),
                    created_by="old-version", created_at=now)
        s.add(row)
        s.flush()
        s.add(GrantStudy(grant_pk=row.pk, study_uid=site.stored[0]))
        return row.pk


@pytest.mark.parametrize("level", ["pseudonymised", "research-copy"])
def test_grant_at_a_project_keyed_level_is_a_400_and_stores_nothing(site, level):
    with site.client(site.sec_token) as c:
        if level != "pseudonymised":
            assert c.put(f"/api/levels/{level}", json=KEYED).status_code == 200
        before = site.grants()
        r = c.post("/api/grants", json={"account_id": site.tp.account_id, "study_uids": [site.stored[0]],
                                        "level": level})
        listed = c.get(f"/api/accounts/{site.tp.account_id}/access")
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(f"level '{level}' needs a research project")
    assert site.grants() == before
    assert level not in {g["level"] for g in listed.json()["grants"]}


def _reads(study: str, series: str, sop: str) -> list[str]:
    instance = f"/dicomweb/studies/{study}/series/{series}/instances/{sop}"
    return [f"/dicomweb/studies/{study}", f"/dicomweb/studies/{study}/metadata", instance,
            f"{instance}/metadata", f"{instance}/frames/1", f"{instance}/rendered"]


def test_stored_project_keyed_grant_is_refused_like_a_missing_study(site, old_grant):
    study, series, sop = site.stored
    with site.client(site.tp_token) as c:
        got = [c.get(p) for p in _reads(study, series, sop)]
        missing = [c.get(p) for p in _reads(MISSING, MISSING, MISSING)]
        searches = [c.get("/dicomweb/studies"), c.get("/dicomweb/studies", params={"StudyInstanceUID": study}),
                    c.get(f"/dicomweb/studies/{study}/series")]
    for r, same in zip(got, missing, strict=True):
        assert r.status_code == 404, (r.url, r.status_code, r.text[:200])
        assert r.content == same.content
    for r in searches:  # the listing leaves the study out: no row to fail on
        assert (r.status_code, r.json()) == (200, []), (r.url, r.text[:200])


def test_refusals_of_a_stored_project_keyed_grant_are_audited(site, old_grant):
    study = site.stored[0]
    with site.client(site.tp_token) as c:
        assert c.get(f"/dicomweb/studies/{study}").status_code == 404
    site.archive.audit.flush()
    with site.archive.access.ctx.engine.connect() as conn:
        entries = [json.loads(bytes(e)) for e in conn.scalars(select(AuditEntry.entry).order_by(AuditEntry.idx))]
    refused = [e for e in entries if e.get("user") == "pk-tp" and e.get("study_uid") == study
               and "needs a research project" in e.get("reason", "")]
    assert refused and all(e["outcome"] == MINOR_FAILURE for e in refused)
    assert not [e for e in entries if e.get("user") == "pk-tp" and e.get("outcome") == 0
                and e.get("level") == "pseudonymised"]
