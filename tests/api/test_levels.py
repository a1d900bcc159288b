"""The must-hold of dynamic masking over real HTTP: one study, several readers, each gets
exactly what their level allows on every retrieval path, and nothing in a request can
raise it."""

from __future__ import annotations

import io
import json
import random
import re
import warnings
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from sqlalchemy import select
from typer.testing import CliRunner

from safepacs.api import create_app, multipart
from safepacs.archive.service import Archive
from safepacs.audit.models import AuditEntry
from safepacs.cli import app as cli_app
from safepacs.dicom.memio import to_bytes
from safepacs.render.render import PRIVATE_GROUP, read_private_mark
from safepacs.synth import generate, make_dataset
from safepacs.synth.pixels import radiograph
from tests.access.http import serving
from tests.people import admin, clinician, person, reader
from tests.render.helpers import uids
from tests.render.test_render import _leaks

MULTIPART = 'multipart/related; type="application/dicom"'


def _chest(seed: int, size: int = 768) -> bytes:
    """A 12-bit radiograph big enough for the watermark to be read back from a JPEG."""
    ds, _ = make_dataset(random.Random(seed), "CR", "ISO_IR 100", small=True)
    ds.Rows = ds.Columns = size
    ds.BitsStored, ds.HighBit = 12, 11
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = radiograph(np.random.default_rng(seed), size, size, 12, False).tobytes()
    return to_bytes(ds)


def read(data: bytes) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data))


def ds_bytes(ds: pydicom.Dataset) -> bytes:
    fp = io.BytesIO()
    ds.save_as(fp, enforce_file_format=True)
    return fp.getvalue()


def objects(response: httpx.Response) -> list[bytes]:
    assert response.status_code == 200, response.text[:200]
    boundary, _ = multipart.boundary_of(response.headers["content-type"])
    return [p.content for p in multipart.parse(response.content, boundary, max_part_bytes=1 << 30)]


class Site:
    """The archive, its readers and the study they share."""

    base = ""

    def __init__(self, root) -> None:
        corpus = root / "in"
        self.key = generate(corpus, 12, 11, small=True)
        self.archive, _ = Archive.create(root / "data")
        self.data_dir = root / "data"
        self.originals: dict[str, tuple[str, bytes]] = {}  # stored SOP UID -> (rel, original)
        for rel in sorted(self.key.files):
            data = (corpus / rel).read_bytes()
            try:
                got = self.archive.ingest(data, source="test")
            except Exception:  # noqa: BLE001 - objects the door refuses are not part of the study
                continue
            self.originals[got.sop_instance_uid] = (rel, data)
        by_study: dict[str, list[str]] = {}
        for sop, _ in self.originals.items():
            study = self._study_of(sop)
            by_study.setdefault(study, []).append(sop)
        self.study = max(by_study, key=lambda s: len(by_study[s]))
        self.sops = by_study[self.study]
        chest = self.archive.ingest(_chest(3), source="test")
        self.chest = (chest.study_uid, chest.series_uid, chest.sop_instance_uid)
        a = self.archive
        sec = admin(a)
        self.patient_pid = self._patient_of(self.study)
        self.doc, self.doc_token = clinician(a, "doc")  # cares for every patient stored
        self.res, self.res_token = person(a, "res-p", "researcher")
        self.resq, self.resq_token = person(a, "res-q", "researcher")
        until = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=30)
        for code, who in (("P", self.res), ("Q", self.resq)):
            project = a.access.grants.create_project(sec, code, "synthetic study", until)
            a.access.grants.add_member(sec, project.id, who.account_id)
            a.access.grants.add_cohort(sec, project.id, study_uids=[self.study, self.chest[0]])
        self.tp, self.tp_token = person(a, "tp", "third_party")
        self.grant = a.access.grants.create_grant(sec, self.tp.account_id, [self.study])
        self.pat, self.pat_token = person(a, "pat", "patient")
        a.access.grants.link_patient(sec, self.pat.account_id, self.patient_pid)
        self.svc_token = a.create_token("svc")
        reader(a)

    def _study_of(self, sop: str) -> str:
        return _lookup(self.archive, sop)[0]

    def _patient_of(self, study: str) -> str:
        from sqlalchemy import select

        from safepacs.index.models import Patient, Study

        with self.archive.access.ctx.engine.connect() as conn:
            return conn.scalar(select(Patient.patient_id).join(Study, Study.patient_pk == Patient.pk)
                               .where(Study.study_uid == study))

    def seen(self, who, *stored: str) -> list[str]:
        """Stored UIDs as ``who`` knows them."""
        return [self.archive.masking.outward(who, u) for u in stored]

    def url(self, who, sop: str, suffix: str = "") -> str:
        study, series, _ = _lookup(self.archive, sop)
        st, se, so = self.seen(who, study, series, sop)
        return f"/dicomweb/studies/{st}/series/{se}/instances/{so}{suffix}"


def _lookup(archive: Archive, sop: str) -> tuple[str, str, str]:
    from sqlalchemy import select

    from safepacs.index.models import Instance, Series, Study

    with archive.access.ctx.engine.connect() as conn:
        row = conn.execute(select(Study.study_uid, Series.series_uid, Instance.sop_uid)
                           .join(Series, Series.study_pk == Study.pk)
                           .join(Instance, Instance.series_pk == Series.pk)
                           .where(Instance.sop_uid == sop)).one()
    return tuple(row)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("levels"))
    with serving(create_app(s.archive)) as url:
        s.base = url
        yield s
    s.archive.close()


def client(site: Site, token: str, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=site.base, timeout=60, headers={"Authorization": f"Bearer {token}", **headers})


def test_three_readers_get_what_their_levels_say(site):
    with client(site, site.doc_token) as c:
        doc = {sop: read(objects(c.get(site.url(site.doc, sop)))[0]) for sop in site.sops}
    with client(site, site.res_token) as c:
        res = objects(c.get(f"/dicomweb/studies/{site.seen(site.res, site.study)[0]}"))
    with client(site, site.resq_token) as c:
        resq = [read(d) for d in objects(c.get(f"/dicomweb/studies/{site.seen(site.resq, site.study)[0]}"))]
    with client(site, site.tp_token) as c:
        tp = objects(c.get(f"/dicomweb/studies/{site.seen(site.tp, site.study)[0]}"))
    assert len(res) == len(resq) == len(tp) == len(site.sops) >= 2
    q_uids = set().union(*(uids(d) for d in resq))
    q_pids = {d.PatientID for d in resq}
    level = site.archive.masking.levels["anonymised"]
    allowed = level.keep_tags | level.empty_tags | {0x00120062, 0x00120063, 0x00120064, 0x00280303}
    for sop in site.sops:
        rel, original_bytes = site.originals[sop]
        original = read(original_bytes)
        # clinician: the original, element by element; pixels apart from the watermark
        got = doc[sop]
        for elem in original:
            if elem.tag != 0x7FE00010:
                assert got[elem.tag] == elem, elem.keyword
        assert {int(e.tag) >> 16 for e in got} - {int(e.tag) >> 16 for e in original} <= {PRIVATE_GROUP}
        serial = read_private_mark(got, site.archive.masking.keys.watermark)
        assert serial is not None, got.get((PRIVATE_GROUP << 16) | 0x10)
        assert site.archive.masking.issuances.lookup(serial).username == "doc"
        diff = got.pixel_array.astype(np.int64) - original.pixel_array.astype(np.int64)
        assert np.abs(diff).max() <= max(1, int(np.ptp(original.pixel_array)) // 200)
    stored_uids = {u for sop in site.sops for u in _lookup(site.archive, sop)}
    for data in res:
        ds = read(data)
        sop_stored = site.archive.masking.resolve(site.res, None, None, str(ds.SOPInstanceUID))[2]
        rel, original_bytes = site.originals[sop_stored]
        assert _leaks(data, site.key.for_file(rel), site.key.files[rel].charset) == []
        assert not uids(ds) & (stored_uids | q_uids | uids(read(original_bytes)))
        assert ds.PatientID != site.patient_pid and ds.PatientID not in q_pids
        assert not re.search(rb"SP[A-Z2-7]{16}", data)
    for data in tp:
        ds = read(data)
        assert {int(e.tag) for e in ds} <= allowed
        assert not uids(ds) & stored_uids
        assert not any(_leaks(data, site.key.for_file(rel), site.key.files[rel].charset)
                       for rel, _ in (site.originals[s] for s in site.sops))


def test_patient_sees_identified_and_every_other_readers_access(site):
    sop = site.sops[0]
    with client(site, site.pat_token) as c:
        got = read(objects(c.get(site.url(site.pat, sop)))[0])
        original = read(site.originals[sop][1])
        assert (got.PatientName, got.PatientID) == (original.PatientName, original.PatientID)
        assert got.StudyInstanceUID == original.StudyInstanceUID
        for who, token in ((site.doc, site.doc_token), (site.res, site.res_token), (site.tp, site.tp_token)):
            with client(site, token) as other:
                assert other.get(site.url(who, sop)).status_code == 200
        site.archive.audit.flush()
        log = c.get("/api/me/access-log")
    assert log.status_code == 200
    allowed = {(line["role"], line["level"]) for line in log.json() if line["outcome"] == "allowed"}
    assert {("physician", "identified"), ("researcher", "pseudonymised"),
            ("third_party", "anonymised"), ("patient", "identified")} <= allowed
    assert not any("doc" in str(line) or "res-p" in str(line) for line in log.json())


BASE_ACCEPTS = [
    None, "*/*", MULTIPART, f"{MULTIPART}; transfer-syntax=*",
    f"{MULTIPART}; transfer-syntax=1.2.840.10008.1.2.1", f"{MULTIPART}; level=identified",
    "application/dicom", "multipart/related; type=\"application/dicom\"; profile=identified",
]
HEADERS = [{}, {"X-Access-Level": "identified"}, {"X-Purpose": "treatment"}, {"X-Role": "physician"},
           {"X-Break-Glass": "emergency"}, {"Forwarded": "for=127.0.0.1;by=physician"}]
QUERIES = ["", "?level=identified", "?access=identified&purpose=treatment", "?role=physician"]


@pytest.mark.parametrize("who", ["res", "tp"])
def test_no_request_raises_the_level(site, who):
    principal, token = getattr(site, who), getattr(site, f"{who}_token")
    sop = site.sops[0]
    url = site.url(principal, sop)
    rel, original_bytes = site.originals[sop]
    original = read(original_bytes)
    seen = 0
    for accept in BASE_ACCEPTS:
        for extra in HEADERS:
            for query in QUERIES:
                headers = dict(extra, **({"Accept": accept} if accept else {}))
                with client(site, token, **headers) as c:
                    r = c.get(url + query)
                assert r.status_code in (200, 400, 406), (accept, extra, query)
                if r.status_code != 200:
                    continue
                seen += 1
                data = objects(r)[0]
                ds = read(data)
                assert ds.PatientID != original.PatientID and ds.PatientName != original.PatientName
                assert _leaks(data, site.key.for_file(rel), site.key.files[rel].charset) == []
                assert str(ds.StudyInstanceUID) not in (str(original.StudyInstanceUID), site.study)
    assert seen >= len(HEADERS) * len(QUERIES)
    with client(site, token, **{"X-Access-Level": "identified"}) as c:  # the other paths too
        meta = c.get(url + "/metadata?level=identified")
        assert meta.status_code == 200
        text = meta.text
        assert original.PatientID not in text and str(original.StudyInstanceUID) not in text
        assert site.study not in text
        png = c.get(url + "/rendered?level=identified", headers={"Accept": "image/png"})
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"


def test_metadata_frames_and_bulkdata_come_from_the_readers_version(site):
    sop = site.sops[0]
    with client(site, site.res_token) as c:
        url = site.url(site.res, sop)
        whole = read(objects(c.get(url))[0])
        meta = c.get(url + "/metadata")
        assert meta.status_code == 200
        obj = meta.json()[0]
        assert obj["00100020"]["Value"][0] == whole.PatientID
        links = [v["BulkDataURI"] for v in obj.values() if "BulkDataURI" in v]
        assert links and all(site.seen(site.res, sop)[0] in link for link in links)
        assert all(site.study not in link and sop not in link for link in links)
        assert all(c.get(link).status_code == 200 for link in links)
        frames = c.get(url + "/frames/1")
        assert frames.status_code == 200
        frame = objects(frames)[0]
        stored = read(site.archive.read_instance(sop, principal=reader(site.archive)))
        nbytes = int(stored.Rows) * int(stored.Columns) * int(stored.BitsAllocated) // 8
        # the frame is the research copy's: watermarked, so not the stored bytes
        assert len(frame) == nbytes and frame != bytes(stored.PixelData[:nbytes])
    with client(site, site.doc_token) as c:  # identified: original values, links that work
        obj = c.get(site.url(site.doc, sop) + "/metadata").json()[0]
        original = read(site.originals[sop][1])
        assert obj["00100020"]["Value"][0] == original.PatientID
        links = [v["BulkDataURI"] for v in obj.values() if "BulkDataURI" in v]
        assert links and all(c.get(link).status_code == 200 for link in links)
    with client(site, site.tp_token) as c:
        obj = c.get(site.url(site.tp, sop) + "/metadata").json()[0]
        assert obj["00100020"].get("Value") in (None, [], [""])
        assert site.study not in str(obj)


def test_rendered_jpeg_names_its_reader_and_differs_per_response(site, tmp_path):
    study, series, sop = site.chest
    url = site.url(site.doc, sop) + "/rendered"
    with client(site, site.doc_token, Accept="image/jpeg") as c:
        first, second = c.get(url), c.get(url + "?quality=90")
    assert first.status_code == second.status_code == 200
    assert first.headers["content-type"] == "image/jpeg"
    assert first.content != second.content  # one issuance serial per response
    path = tmp_path / "leak.jpg"
    path.write_bytes(first.content)
    result = CliRunner().invoke(cli_app, ["trace", str(path), "--data-dir", str(site.data_dir)])
    assert result.exit_code == 0, result.output
    assert "issued to: doc " in result.output
    # the service account's rendering is unmarked and the researcher's is marked to them
    with client(site, site.svc_token, Accept="image/png") as c:
        plain = c.get(site.url(reader(site.archive), sop) + "/rendered")
    with client(site, site.res_token, Accept="image/png") as c:
        research = c.get(site.url(site.res, sop) + "/rendered")
    assert plain.status_code == research.status_code == 200
    a = np.asarray(Image.open(io.BytesIO(plain.content)), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(research.content)), dtype=np.int16)
    assert a.shape == b.shape and 0 < np.abs(a - b).max() <= 4
    path.write_bytes(research.content)
    result = CliRunner().invoke(cli_app, ["trace", str(path), "--data-dir", str(site.data_dir)])
    assert result.exit_code == 0 and "issued to: res-p " in result.output


def test_rendered_shortcut_answers_like_the_full_route(site, monkeypatch):
    """The ASGI shortcut serves a plain ``/rendered`` (no query); anything else, and any
    refusal, is left to the full route, which answers it the same way."""
    from safepacs.api import fastpath

    served = []
    real = fastpath.FastRetrieve._answer

    def spy(self, uids, scope, *, rendered):  # type: ignore[no-untyped-def]
        answer = real(self, uids, scope, rendered=rendered)
        served.append((rendered, answer is not None))
        return answer

    monkeypatch.setattr(fastpath.FastRetrieve, "_answer", spy)
    study, series, sop = site.chest
    url = site.url(site.doc, sop) + "/rendered"
    with client(site, site.doc_token, Accept="image/jpeg") as c:
        short, full = c.get(url), c.get(url + "?quality=90")
        refused = c.get(url, headers={"Accept": "text/html"})
    assert served == [(True, True), (True, False)]  # the query string never reaches it
    assert short.status_code == full.status_code == 200
    assert short.headers["content-type"] == full.headers["content-type"] == "image/jpeg"
    assert int(short.headers["content-length"]) == len(short.content)
    a = np.asarray(Image.open(io.BytesIO(short.content)), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(full.content)), dtype=np.int16)
    assert a.shape == b.shape and np.abs(a - b).mean() < 3  # two marks, same picture
    assert refused.status_code == 406
    with client(site, site.tp_token, Accept="image/png") as c:  # a third party: no access
        assert c.get(site.url(site.doc, sop) + "/rendered").status_code == 404


def test_a_refused_read_is_decided_and_audited_once(site):
    """The shortcut answers a refusal itself (the full route's 404), instead of letting the
    full route decide and audit the same request a second time."""
    stranger, token = person(site.archive, "stranger", "third_party")  # holds no grant

    def decisions() -> int:
        site.archive.audit.flush()
        with site.archive.access.ctx.engine.connect() as conn:
            entries = [json.loads(bytes(e)) for e in conn.scalars(select(AuditEntry.entry))]
        return sum(1 for e in entries if e.get("user") == "stranger" and e.get("route") == "decide:read")

    study, series, sop = site.chest
    url = f"/dicomweb/studies/{study}/series/{series}/instances/{sop}"
    with client(site, token) as c:
        for path, accept in ((url, "application/dicom"), (url + "/rendered", "image/jpeg")):
            before = decisions()
            short = c.get(path, headers={"Accept": accept})
            after_short = decisions()
            full = c.get(path + "?quality=90" if "rendered" in path else path + "?", headers={"Accept": accept})
            after_full = decisions()
            assert short.status_code == full.status_code == 404
            assert short.json() == full.json() == {"error": "not found", "status": 404}
            assert after_short - before == 1, path
            assert after_full - after_short == 1, path


def test_c_get_over_dicom_networking_serves_the_level(site):
    """A researcher's C-GET (JWT in User Identity Negotiation) gets the research copies."""
    from pynetdicom import AE, build_role, evt
    from pynetdicom.pdu_primitives import UserIdentityNegotiation
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet

    from safepacs.dimse.scp import start
    from tests.api.conftest import free_port

    port = free_port()
    server = start(site.archive, host="127.0.0.1", port=port, ae_title="SAFEPACS",
                   allowed_callers=[{"ae_title": "*", "host": "127.0.0.1"}])
    got: list[pydicom.Dataset] = []

    def on_store(event):  # type: ignore[no-untyped-def]
        got.append(event.dataset)
        return 0x0000

    try:
        ae = AE(ae_title="RESEARCH")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        stored = [read(site.archive.read_instance(s, principal=reader(site.archive))) for s in site.sops]
        classes = sorted({str(ds.SOPClassUID) for ds in stored})
        for uid in classes:
            ae.add_requested_context(uid)
        roles = [build_role(uid, scp_role=True) for uid in classes]
        ident = UserIdentityNegotiation()
        ident.user_identity_type = 5
        ident.primary_field = site.res_token.encode()
        assoc = ae.associate("127.0.0.1", port, ae_title="SAFEPACS", ext_neg=[*roles, ident],
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
        assert assoc.is_established
        query = pydicom.Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = site.seen(site.res, site.study)[0]
        statuses = [status.Status for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet) if status]
        assoc.release()
    finally:
        server.shutdown()
    assert statuses[-1] == 0x0000
    assert len(got) == len(site.sops)
    for ds in got:
        assert ds.PatientID != site.patient_pid and str(ds.StudyInstanceUID) == site.seen(site.res, site.study)[0]
        assert ds.PatientID.startswith("PR")  # the project's pseudonym
        stored_sop = site.archive.masking.resolve(site.res, None, None, str(ds.SOPInstanceUID))[2]
        rel, _ = site.originals[stored_sop]
        assert _leaks(ds_bytes(ds), site.key.for_file(rel), site.key.files[rel].charset) == []


def test_revoked_grant_gets_404_even_with_a_warm_cache(site):
    a = site.archive
    sec = admin(a)
    tp, token = person(a, "tp-revoked", "third_party")
    grant = a.access.grants.create_grant(sec, tp.account_id, [site.study])
    url = site.url(tp, site.sops[0])
    with client(site, token) as c:
        assert c.get(url).status_code == 200
        assert len(a.masking.cache) > 0
        a.access.grants.revoke_grant(sec, grant.id)
        assert c.get(url).status_code == 404
        assert c.get(url + "/metadata").status_code == 404
        assert c.get(url + "/rendered").status_code == 404


def test_cache_holds_renders_sealed_only(site):
    # renders of its own: with the tests spread over workers, those of the tests above may
    # have run in another process, on another site
    _, _, chest = site.chest
    for who, token in ((site.doc, site.doc_token), (site.res, site.res_token)):
        with client(site, token, Accept="image/png") as c:
            assert c.get(site.url(who, chest) + "/rendered").status_code == 200
    files = list((site.data_dir / "cache").glob("render-*/*.rc"))
    assert files
    sop = site.sops[0]
    rel, original_bytes = site.originals[sop]
    original = read(original_bytes)
    needles = [str(original.PatientID).encode(), str(original.StudyInstanceUID).encode(), b"DICM",
               site.study.encode()]
    for f in files:
        blob = f.read_bytes()
        assert not any(n in blob for n in needles if len(n) >= 4)
        assert not re.search(rb"\d+\.\d+\.\d+\.\d+", f.name.encode())
    assert all(f.stat().st_mode & 0o077 == 0 for f in files)
