"""The retention / storage / backup / decommission commands, end to end on a real archive."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from safepacs.archive import Archive
from safepacs.cli import app
from tests.archive.objects import ct_bytes

runner = CliRunner()


def make_archive(data_dir, studies: int = 2) -> list[str]:
    arch, _ = Archive.create(data_dir)
    try:
        return [arch.ingest(ct_bytes(f"1.2.826.0.1.3680043.99.{n}.1.1", study=f"1.2.826.0.1.3680043.99.{n}",
                                     series=f"1.2.826.0.1.3680043.99.{n}.1", pixel=n), source="test").study_uid
                for n in range(1, studies + 1)]
    finally:
        arch.close()


def test_plan_hold_run_certificates_verify(tmp_path):
    data = tmp_path / "a"
    uids = make_archive(data)
    (data / "retention.json").write_text(json.dumps(
        {"policies": [{"name": "short", "match": {}, "keep_days": 0, "from": "last_access"}]}))
    res = runner.invoke(app, ["retention", "plan", "--data-dir", str(data)])
    assert res.exit_code == 0, res.output
    assert "2 of 2 studies due" in res.output
    res = runner.invoke(app, ["retention", "hold", "--data-dir", str(data), "--study", uids[0], "--reason", "case 7", "--by", "sec"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["backup", "--data-dir", str(data), str(tmp_path / "bk")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["retention", "run", "--data-dir", str(data)])
    assert res.exit_code == 0, res.output
    assert "destroyed 1, held 1" in res.output and "KEK rotated: True" in res.output
    res = runner.invoke(app, ["retention", "certificates", "--data-dir", str(data)])
    assert res.exit_code == 0
    line = res.stdout.strip().splitlines()[0]
    assert json.loads(line)["certificate"]["study_uid"] == uids[1]
    cert = tmp_path / "cert.json"
    cert.write_text(line)
    assert runner.invoke(app, ["retention", "verify", str(cert)]).exit_code == 0
    missing = runner.invoke(app, ["retention", "verify", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "cannot read the certificate" in " ".join(missing.output.split())
    assert line.count('"retention"') == 1 and line.count('\\"retention\\"') == 1
    cert.write_text(line.replace('"retention"', '"erasure"'))  # the readable copy changed
    assert runner.invoke(app, ['retention', 'verify', str(cert)]).exit_code == 1
    cert.write_text(line.replace('\\"retention\\"', '\\"erasure\\"'))  # the signed bytes changed
    assert runner.invoke(app, ["retention", "verify", str(cert)]).exit_code == 1


def test_scrub_and_repair_sealed_storage(tmp_path):
    data = tmp_path / "a"
    make_archive(data, 1)
    nodes = [f"file://{tmp_path / f'n{i}'}" for i in range(5)]
    (data / "sealing.json").write_text(json.dumps({"k": 3, "nodes": nodes}))
    from safepacs.store.blobs import LocalStore
    from safepacs.store.split import open_split, split_url

    store = open_split(split_url(3, nodes))
    store.put("ab/" + "1" * 32 + ".obj", b"x" * 5000)
    assert runner.invoke(app, ["storage", "scrub", "--data-dir", str(data)]).exit_code == 0
    store.nodes[1].delete("ab/" + "1" * 32 + ".obj")
    res = runner.invoke(app, ["storage", "scrub", "--data-dir", str(data)])
    assert res.exit_code == 1 and "1 damaged" in res.output
    res = runner.invoke(app, ["storage", "repair", "--data-dir", str(data), "--node", "1",
                              "--replacement", f"file://{tmp_path / 'n1-new'}"])
    assert res.exit_code == 0, res.output
    assert json.loads((data / "sealing.json").read_text())["nodes"][1].endswith("n1-new")
    assert list(LocalStore(tmp_path / "n1-new").names()) == ["ab/" + "1" * 32 + ".obj"]
    assert runner.invoke(app, ["storage", "scrub", "--data-dir", str(data)]).exit_code == 0


def test_decommission_needs_yes_and_proves(tmp_path):
    data = tmp_path / "a"
    make_archive(data, 1)
    assert runner.invoke(app, ["decommission", "--data-dir", str(data)]).exit_code == 2
    res = runner.invoke(app, ["decommission", "--data-dir", str(data), "--yes"])
    assert res.exit_code == 0, res.output
    assert "blobs opened: 0; proven: True" in res.output


def test_erase_runs_only_with_the_security_admin_and_a_second_approver(tmp_path):
    from safepacs.access.errors import Forbidden
    from safepacs.archive.errors import NotFound
    from tests.people import admin, person

    data = tmp_path / "a"
    doomed, other = make_archive(data)
    arch = Archive.open(data)
    try:
        doc, _ = person(arch, "doc", "physician")
        rad, _ = person(arch, "rad", "radiologist")
        approvals = arch.access.approvals
        req = approvals.request(doc, "erase_study", doomed)
        with pytest.raises(Forbidden):
            approvals.vote(doc, req.id, True)  # never one's own request
    finally:
        arch.close()
    erase = ["retention", "erase", "--data-dir", str(data), "--study", doomed]
    res = runner.invoke(app, erase)
    assert res.exit_code == 1 and "no approved erase_study request" in res.output
    arch = Archive.open(data)
    try:
        assert arch.access.approvals.vote(admin(arch), req.id, True).status == "pending"  # one is not enough
    finally:
        arch.close()
    assert runner.invoke(app, erase).exit_code == 1
    arch = Archive.open(data)
    try:
        assert arch.access.approvals.vote(rad, req.id, True).status == "approved"
    finally:
        arch.close()
    res = runner.invoke(app, erase)
    assert res.exit_code == 0, res.output
    assert "KEK rotated: True" in res.output
    arch = Archive.open(data)
    try:
        with pytest.raises(NotFound):
            arch._data_key(doomed)
        assert arch.status()["studies"] == 1
        assert arch._data_key(other)  # the other study is untouched
    finally:
        arch.close()
    res = runner.invoke(app, ["retention", "certificates", "--data-dir", str(data), "--study", doomed])
    doc_ = json.loads(res.stdout.strip().splitlines()[0])["certificate"]
    assert doc_["basis"] == "erasure" and doc_["policy"] == "erasure-request"
    assert [a["role"] for a in doc_["approvers"]] == ["security_admin", "radiologist"]
    assert "doc" not in [a["account"] for a in doc_["approvers"]]  # the requester does not count
    # the same approval cannot erase again, and an approval for another study does not carry over
    assert runner.invoke(app, ["retention", "erase", "--data-dir", str(data), "--study", other]).exit_code == 1


def test_erase_refuses_an_approval_older_than_the_policy_allows(tmp_path):
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from safepacs.access.models import Approval
    from tests.people import admin, person

    data = tmp_path / "a"
    doomed, _ = make_archive(data)
    arch = Archive.open(data)
    try:
        doc, _ = person(arch, "doc", "physician")
        rad, _ = person(arch, "rad", "radiologist")
        req = arch.access.approvals.request(doc, "erase_study", doomed)
        arch.access.approvals.vote(admin(arch), req.id, True)
        assert arch.access.approvals.vote(rad, req.id, True).status == "approved"
        with Session(arch._engine) as s, s.begin():
            s.execute(update(Approval).where(Approval.pk == req.id).values(
                decided_at=datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=73)))
    finally:
        arch.close()
    res = runner.invoke(app, ["retention", "erase", "--data-dir", str(data), "--study", doomed])
    assert res.exit_code == 1 and "no approved erase_study request" in res.output


def test_a_backup_inside_the_data_dir_is_refused(tmp_path):
    """The archive manages what is in its data dir: a backup inside it (here in the blob
    folder, where it once made every later open of the archive crash) is a usage error."""
    data = tmp_path / "a"
    make_archive(data, studies=1)
    for dest in (data / "bk", data / "blobs" / "bk"):
        res = runner.invoke(app, ["backup", "--data-dir", str(data), str(dest)])
        assert res.exit_code == 2 and "DEST must lie outside the data dir" in res.output
        assert not dest.exists()
    res = runner.invoke(app, ["status", "--data-dir", str(data)])
    assert res.exit_code == 0, res.output


def test_a_hold_says_how_many_stored_studies_it_covers(tmp_path):
    """A hold may precede its studies, so one on an unknown identifier stands; but it warns,
    for a mistyped UID would otherwise leave the real study to be destroyed."""
    data = tmp_path / "a"
    uids = make_archive(data, studies=1)
    res = runner.invoke(app, ["retention", "hold", "--data-dir", str(data), "--study", uids[0], "--reason", "case 7", "--by", "sec"])
    assert res.exit_code == 0 and "covers 1 stored study" in res.output and "warning" not in res.output
    typo = uids[0][:-1] + ("0" if uids[0][-1] != "0" else "1")
    res = runner.invoke(app, ["retention", "hold", "--data-dir", str(data), "--study", typo, "--reason", "case 7", "--by", "sec"])
    assert res.exit_code == 0 and "no stored study matches" in " ".join(res.output.split())
    res = runner.invoke(app, ["retention", "plan", "--data-dir", str(data), "--all"])
    assert res.exit_code == 0, res.output


def test_decommissioning_a_node_moves_the_archive_onto_its_replacement(tmp_path):
    """The replacement is written into the settings, so the archive stops using the wiped
    node; a replacement that is already a node is refused with nothing changed."""
    from urllib.parse import parse_qs, urlparse

    from safepacs.config import Settings
    from safepacs.store.blobs import LocalStore
    from safepacs.store.split import split_url
    from tests.retention.stored import read_plain

    nodes = [f"file://{tmp_path / f'n{i}'}" for i in range(4)]
    data = tmp_path / "a"
    arch, _ = Archive.create(data, store_url=split_url(2, nodes))
    try:
        stored = arch.ingest(ct_bytes(), source="test")
    finally:
        arch.close()
    before = Settings.load(data, database_url=None).store_url
    res = runner.invoke(app, ["decommission", "--data-dir", str(data), "--node", "1", "--replacement", nodes[3]])
    assert res.exit_code == 2 and "already a node" in res.output
    assert Settings.load(data, database_url=None).store_url == before
    assert len(list(LocalStore(tmp_path / "n1").names())) == 2

    new = f"file://{tmp_path / 'n1-new'}"
    res = runner.invoke(app, ["decommission", "--data-dir", str(data), "--node", "1", "--replacement", new])
    assert res.exit_code == 0 and "proven: True" in res.output, res.output
    url = Settings.load(data, database_url=None).store_url
    assert parse_qs(urlparse(url).query)["node"] == [nodes[0], new, nodes[2], nodes[3]]
    assert list(LocalStore(tmp_path / "n1").names()) == []
    assert runner.invoke(app, ["storage", "scrub", "--data-dir", str(data)]).exit_code == 0
    with Archive.open(data) as again:
        assert read_plain(again, stored.study_uid, stored.sop_instance_uid)


def test_a_backup_copies_what_the_index_names_and_lists_what_is_missing(tmp_path):
    """From one snapshot of the index: its blobs, not the store's listing (an orphan written
    while the archive is open is not copied); a blob the index names but the store lost does
    not sink the backup (listed, exit 1)."""
    from safepacs.retention.backup import backup
    from safepacs.store.blobs import LocalStore, new_names

    data = tmp_path / "a"
    make_archive(data, studies=2)
    named = sorted(LocalStore(data / "blobs").names())
    (data / "blobs" / named[0]).unlink()  # damage
    with Archive.open(data) as arch:
        [orphan] = new_names("obj")
        (data / "blobs" / orphan).write_bytes(b"in flight, not committed")
        report = backup(arch, tmp_path / "bk")
    assert (report.blobs, report.missing) == (len(named) - 1, 1)
    assert sorted(LocalStore(tmp_path / "bk" / "blobs").names()) == named[1:]
    assert json.loads((tmp_path / "bk" / "backup.json").read_text())["missing_blobs"] == 1
    res = runner.invoke(app, ["backup", "--data-dir", str(data), str(tmp_path / "bk2")])
    assert res.exit_code == 1 and "1 blobs the index names are missing" in " ".join(res.output.split())
