"""What leaves the archive for each reader: the sealed render cache and its partitions, and
``safepacs export`` (same access checks, the project's level, its keep list, audited)."""

from __future__ import annotations

import io
import json
import re
import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import pydicom
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from safepacs.archive.service import Archive
from safepacs.audit.events import EXPORT
from safepacs.cli import app as cli_app
from safepacs.cli_export import IMAGE_ATTRIBUTES, ExportError, export_project
from safepacs.render.render import PRIVATE_GROUP, project_pseudonym
from safepacs.synth import generate
from tests.people import PASSWORD, admin, clinician, person, reader
from tests.render.test_render import _leaks


def read(data: bytes | object) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data) if isinstance(data, bytes | bytearray) else data)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("masking")
    key = generate(root / "in", 10, 21, small=True)
    archive, _ = Archive.create(root / "data")
    stored = {}
    for rel in sorted(key.files):
        try:
            got = archive.ingest((root / "in" / rel).read_bytes(), source="test")
        except Exception:  # noqa: BLE001 - refused objects are not part of the test
            continue
        stored[got.sop_instance_uid] = (rel, got.study_uid)
    studies = sorted({s for _, s in stored.values()}, key=lambda s: -sum(v[1] == s for v in stored.values()))
    sec = admin(archive)
    until = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=30)
    people = {}
    for code in ("P", "Q"):
        who, _ = person(archive, f"res-{code.lower()}", "researcher")
        project = archive.access.grants.create_project(sec, code, "synthetic", until)
        archive.access.grants.add_member(sec, project.id, who.account_id)
        archive.access.grants.add_cohort(sec, project.id, study_uids=[studies[0]])
        people[code] = (who, project.id)
        _without_second_factor(archive, who.username)
    tp, _ = person(archive, "tp", "third_party")
    grant = archive.access.grants.create_grant(sec, tp.account_id, [studies[0]])
    doc, _ = clinician(archive, "doc")
    yield {"archive": archive, "key": key, "stored": stored, "study": studies[0], "people": people,
           "tp": tp, "grant": grant.id, "doc": doc, "data_dir": root / "data"}
    archive.close()


def _sops(site) -> list[str]:
    return [sop for sop, (_, study) in site["stored"].items() if study == site["study"]]


def test_renders_are_cached_sealed_per_partition_and_marked_per_copy(site):
    a, sop = site["archive"], _sops(site)[0]
    res_p, res_q = site["people"]["P"][0], site["people"]["Q"][0]
    a.masking.cache.invalidate()
    first = read(a.read_instance(sop, principal=res_p))
    assert len(a.masking.cache) == 1
    second = read(a.read_instance(sop, principal=res_p))
    assert len(a.masking.cache) == 1  # served from the cache
    assert first.PatientID == second.PatientID and first.SOPInstanceUID == second.SOPInstanceUID
    assert not np.array_equal(first.pixel_array, second.pixel_array)  # each copy its own mark
    q = read(a.read_instance(sop, principal=res_q))
    t = read(a.read_instance(sop, principal=site["tp"]))
    d = read(a.read_instance(sop, principal=site["doc"]))
    assert len(a.masking.cache) == 4  # P, Q, the grant's UID space, identified
    assert q.PatientID != first.PatientID and t.SOPInstanceUID not in (q.SOPInstanceUID, first.SOPInstanceUID)
    assert d.PatientID not in (first.PatientID, q.PatientID)
    # a cached render is never served to another partition: P's copy stays P's
    again = read(a.read_instance(sop, principal=res_q))
    assert again.PatientID == q.PatientID
    assert a.masking.invalidate(project="P") == 1
    assert a.masking.invalidate(grant=site["grant"]) == 1
    assert len(a.masking.cache) == 2


def test_header_only_reads_issue_nothing_and_full_reads_one_copy_each(site):
    from sqlalchemy import func

    from safepacs.render.models import Issuance

    a, sop = site["archive"], _sops(site)[0]

    def issued() -> int:
        with a.access.ctx.engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(Issuance))

    before = issued()
    ds = a.metadata(sop, principal=site["doc"])
    assert "PixelData" not in ds and ds.PatientID
    assert (PRIVATE_GROUP << 16 | 0x0010) not in ds  # metadata carries no issuance
    assert issued() == before
    a.read_instance(sop, principal=site["doc"])
    a.read_instance(sop, principal=site["doc"])
    assert issued() == before + 2


def _without_second_factor(archive: Archive, username: str) -> None:
    """Researchers need no second factor by the default policy; these never enrolled one."""
    from sqlalchemy import update

    from safepacs.access.models import Account

    with archive.access.ctx.engine.begin() as conn:
        conn.execute(update(Account).where(Account.username == username)
                     .values(totp_confirmed=False, totp_sealed=None))


def _run_export(site, tmp_path, username: str, project: str = "P", tag: str = ""):
    out = tmp_path / f"export-{username}-{project}{tag}"
    result = CliRunner().invoke(
        cli_app, ["export", "--project", project, "--out", str(out), "--username", username,
                  "--data-dir", str(site["data_dir"])],
        env={"SAFEPACS_PASSWORD": PASSWORD})
    return result, out


def test_export_into_the_data_dir_is_refused(site):
    out = site["data_dir"] / "exports" / "P"
    result = CliRunner().invoke(
        cli_app, ["export", "--project", "P", "--out", str(out), "--username", "res-p",
                  "--data-dir", str(site["data_dir"])],
        env={"SAFEPACS_PASSWORD": PASSWORD})
    assert result.exit_code == 2
    assert "outside the data dir" in " ".join(result.output.split())
    assert not (site["data_dir"] / "exports").exists()


def test_export_without_a_password_to_read_is_a_usage_error(site, tmp_path, monkeypatch):
    monkeypatch.delenv("SAFEPACS_PASSWORD", raising=False)
    result = CliRunner().invoke(
        cli_app, ["export", "--project", "P", "--out", str(tmp_path / "x"), "--username", "res-p",
                  "--data-dir", str(site["data_dir"])], input="")
    assert result.exit_code == 2
    assert "no password given (set SAFEPACS_PASSWORD" in " ".join(result.output.split())
    assert not (tmp_path / "x").exists()


def test_export_writes_the_project_at_its_level_with_a_manifest(site, tmp_path):
    a, key = site["archive"], site["key"]
    result, out = _run_export(site, tmp_path, "res-p")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["project"] == "P" and manifest["level"] == "pseudonymised"
    assert manifest["count"] == len(_sops(site)) and not manifest["failed"]
    pkey = a.masking.keys.project("P")
    pseudonyms = {project_pseudonym(pkey, pid) for pid in _stored_patients(a, site["study"])}
    for entry in manifest["files"]:
        data = (out / entry["path"]).read_bytes()
        assert len(data) == entry["size"]
        ds = read(data)
        assert ds.PatientID in pseudonyms
        stored_sop = a.masking.resolve(site["people"]["P"][0], None, None, str(ds.SOPInstanceUID))[2]
        rel, _ = site["stored"][stored_sop]
        assert _leaks(data, key.for_file(rel), key.files[rel].charset) == []
        assert not re.search(rb"SP[A-Z2-7]{16}", data)
    assert not any(site["study"] in str(p) for p in out.rglob("*"))
    a.audit.flush()
    events = _events(a, EXPORT)
    assert any(e.get("route") == "cli:export" and e.get("user") == "res-p" for e in events)
    assert any(e.get("route") == "decide:export" for e in events)


def test_project_keep_list_minimises_the_export(site, tmp_path):
    projects = site["data_dir"] / "projects"
    projects.mkdir(exist_ok=True)
    (projects / "Q.json").write_text(json.dumps({"keep": ["BodyPartExamined", "StudyDate"]}))
    try:
        result, out = _run_export(site, tmp_path, "res-q", "Q")
    finally:
        (projects / "Q.json").unlink()
    assert result.exit_code == 0, result.output
    from pydicom.datadict import tag_for_keyword

    allowed = {tag_for_keyword(k) for k in (*IMAGE_ATTRIBUTES, "BodyPartExamined", "StudyDate")}
    files = [f for f in out.rglob("*.dcm")]
    assert files
    for f in files:
        ds = read(f.read_bytes())
        tags = {int(e.tag) for e in ds}
        assert {t for t in tags if t >> 16 != PRIVATE_GROUP} <= allowed
        assert {"PixelData", "Rows", "Columns", "PatientID"} <= set(ds.dir())
        assert ds.pixel_array.size > 0


def test_export_refuses_unknown_keywords_outsiders_and_other_roles(site, tmp_path):
    projects = site["data_dir"] / "projects"
    projects.mkdir(exist_ok=True)
    (projects / "P.json").write_text(json.dumps({"keep": ["NotAnAttribute"]}))
    try:
        result, out = _run_export(site, tmp_path, "res-p")
    finally:
        (projects / "P.json").unlink()
    assert result.exit_code == 2 and not out.exists()
    result, out = _run_export(site, tmp_path, "res-q", "P")  # not a member of P
    assert result.exit_code == 2 and not any(out.rglob("*.dcm"))
    result, out = _run_export(site, tmp_path, "nobody", "P")
    assert result.exit_code == 2 and "sign-in refused" in result.output
    with pytest.raises(ExportError):
        export_project(site["archive"], site["doc"], "P", tmp_path / "doc")
    with pytest.raises(ExportError):
        export_project(site["archive"], reader(site["archive"]), "P", tmp_path / "svc")


def test_ended_project_exports_nothing(site, tmp_path):
    a = site["archive"]
    sec = admin(a)
    until = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=3)
    who, _ = person(a, "res-r", "researcher")
    _without_second_factor(a, "res-r")
    project = a.access.grants.create_project(sec, "R", "synthetic", until)
    a.access.grants.add_member(sec, project.id, who.account_id)
    a.access.grants.add_cohort(sec, project.id, study_uids=[site["study"]])
    result, out = _run_export(site, tmp_path, "res-r", "R")
    assert result.exit_code == 0, result.output
    a.access.grants.end_project(sec, project.id)
    result, out = _run_export(site, tmp_path, "res-r", "R", "-after")
    assert result.exit_code == 2 and "no studies" in result.output and not any(out.rglob("*.dcm"))


def _stored_patients(archive: Archive, study: str) -> set[str]:
    from safepacs.index.models import Patient, Study

    with archive.access.ctx.engine.connect() as conn:
        return set(conn.scalars(select(Patient.patient_id).join(Study, Study.patient_pk == Patient.pk)
                                .where(Study.study_uid == study)))


def _events(archive: Archive, event_id: str) -> list[dict]:
    from safepacs.audit.models import AuditEntry

    with archive.access.ctx.engine.connect() as conn:
        rows = conn.scalars(select(AuditEntry.entry)).all()
    found = [json.loads(bytes(r)) for r in rows]
    return [e for e in found if e.get("event_id") == event_id]


def test_rendered_views_are_cached_before_the_mark(site):
    from PIL import Image

    from safepacs.archive.masking import DisplayRequest

    a, sop = site["archive"], _sops(site)[0]
    a.masking.cache.invalidate()
    want = DisplayRequest(fmt="png")
    first = a.read_instance(sop, principal=site["doc"], display=want)
    cached = len(a.masking.cache)
    second = a.read_instance(sop, principal=site["doc"], display=want)
    assert len(a.masking.cache) == cached  # the second view came from the cache
    one, two = (np.asarray(Image.open(io.BytesIO(x)), dtype=np.int16) for x in (first, second))
    assert first != second and 0 < np.abs(one - two).max() <= 4  # two copies, two marks
    plain = [a.read_instance(sop, principal=reader(a), display=want) for _ in range(2)]
    assert plain[0] == plain[1]  # the de-identified view carries no mark
    with pytest.raises(ValueError):
        a.read_instance(sop, principal=site["doc"], display=DisplayRequest(frame=999))
