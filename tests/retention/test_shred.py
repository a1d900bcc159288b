"""Crypto-shredding: after destruction nothing recovers the study -- not the archive, not a
copy of every file of the data dir taken before, not a backup taken before; the certificate
verifies; a study under legal hold survives."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from safepacs.access.principal import Principal
from safepacs.archive.errors import NotFound
from safepacs.audit import events as ev
from safepacs.audit.events import MemorySink
from safepacs.index.models import DataKey
from safepacs.retention import backup as backups
from safepacs.retention import shred
from safepacs.retention.certificate import Signer, verify_certificate
from safepacs.store import crypto
from tests.archive.objects import ct_bytes
from tests.retention.stored import blobs_of, opens, read_plain, remaining_keys

ROOT = "1.2.826.0.1.3680043.99"


def ingest_study(arch, n: int, patient: str, count: int = 2, modality: str = "CT") -> tuple[str, list[str]]:
    stored = [
        arch.ingest(ct_bytes(f"{ROOT}.{n}.1.{i}", study=f"{ROOT}.{n}", series=f"{ROOT}.{n}.1",
                             patient_id=patient, accession=f"ACC{n}", pixel=n + i, modality=modality), source="test")
        for i in range(count)
    ]
    return stored[0].study_uid, [s.sop_instance_uid for s in stored]


@pytest.fixture
def signer(tmp_path) -> Signer:
    return Signer(tmp_path / "signing")


def test_destroyed_study_is_unrecoverable_from_archive_data_dir_copies_and_backups(archive, archive_dir, tmp_path, signer, database_url):
    if database_url is not None:
        pytest.skip("the file-copy half needs the index inside the data dir (SQLite)")
    arch, _ = archive
    doomed, doomed_sops = ingest_study(arch, 10, "PAT-DOOMED")
    kept, kept_sops = ingest_study(arch, 11, "PAT-KEPT", modality="MR")
    held, held_sops = ingest_study(arch, 12, "PAT-HELD")
    blobs = blobs_of(arch, doomed)
    kept_bytes = {s: read_plain(arch, kept, s) for s in kept_sops}
    doomed_plain = read_plain(arch, doomed, doomed_sops[0])
    contexts = [p + sop.encode() for sop, _, _ in blobs for p in (b"object\x00", b"delta\x00")]
    # the wrapped key of the doomed study, as it was
    with arch._engine.connect() as conn:
        old_wrapped = conn.scalar(select(DataKey.wrapped).where(DataKey.study_uid == doomed))
    shred.place_hold(arch._engine, by="secadmin", reason="case 2024-17", study_uid=held)
    # copies before destruction: every file of the data dir, and a backup
    copy = tmp_path / "copy-before"
    with arch._engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(FULL)")
    shutil.copytree(archive_dir, copy)
    report = backups.backup(arch, tmp_path / "backup-before")
    # the check below can fail: before destruction the live keys do open the copy
    assert opens(remaining_keys(arch, archive_dir), (copy / "blobs" / blobs[0][1]).read_bytes(), contexts)
    assert report.blobs == len(list(arch._store.names()))
    sink = MemorySink()
    site = archive_dir / "retention.json"
    site.write_text(json.dumps({"policies": [{"name": "short", "match": {"modalities": ["CT"]}, "keep_days": 0, "from": "study_date"}]}))

    result = shred.run(arch, signer=signer, audit=sink, now=datetime.now() + timedelta(days=1))

    assert result.destroyed == [doomed]
    assert held in result.held and held not in result.destroyed
    assert result.kek_rotated
    # the archive: gone
    with pytest.raises(NotFound):
        arch._data_key(doomed)
    assert blobs_of(arch, doomed) == []
    for _, obj, dlt in blobs:
        assert obj not in set(arch._store.names()) and dlt not in set(arch._store.names())
    # the held study survives, bit for bit readable
    for sop in held_sops:
        assert read_plain(arch, held, sop)
    # no key that remains opens any blob of the copy or of the backup
    keys = remaining_keys(arch, archive_dir)
    old_blobs = [p.read_bytes() for folder in (copy / "blobs", tmp_path / "backup-before" / "blobs")
                 for _, obj, dlt in blobs for p in (folder / obj, folder / dlt)]
    assert len(old_blobs) == 4 * len(doomed_sops)
    for blob in old_blobs:
        assert not opens(keys, blob, contexts)
    # the old wrapped key in the copied index does not unwrap under the KEK that remains
    live_kek = crypto.load_kek(arch.settings.kek, archive_dir)
    with sqlite3.connect(copy / "index.sqlite") as conn:
        (copied_wrapped,) = conn.execute("SELECT wrapped FROM data_keys WHERE study_uid = ?", (doomed,)).fetchone()
    assert copied_wrapped == old_wrapped
    with pytest.raises(crypto.CryptoError):
        live_kek.unwrap(copied_wrapped, b"study:" + doomed.encode())
    # the backup never held a data key
    with sqlite3.connect(tmp_path / "backup-before" / "index.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM data_keys").fetchone() == (0,)
    # nothing of the plaintext in any file of the live data dir
    for path in archive_dir.rglob("*"):
        if path.is_file():
            assert doomed_plain[-32:] not in path.read_bytes()
    # the certificate is in the audit trail and verifies; a changed one does not
    (event,) = [e for e in sink.events if e.event_id == ev.STUDY_DELETED and e.study_uid == doomed]
    cert, sig = event.detail["certificate"], event.detail["signature"]
    assert verify_certificate(cert, sig, signer.public_pem)
    doc = json.loads(cert)
    assert doc["patient"] == event.patient and doc["policy"] == "short" and doc["kek_rotated"] is True
    assert len(doc["blobs_deleted"]) == 2 * len(doomed_sops) and len(doc["key_fingerprints"]) == 1
    assert not verify_certificate(cert.replace('"short"', '"other"'), sig, signer.public_pem)
    assert shred.certificates(arch._engine, doomed) == [(cert, sig)]
    for sop, data in kept_bytes.items():  # other studies are untouched
        assert read_plain(arch, kept, sop) == data


def test_study_under_legal_hold_survives_until_released(archive, signer):
    arch, _ = archive
    study, sops = ingest_study(arch, 20, "PAT-H")
    sink = MemorySink()
    pk = shred.place_hold(arch._engine, by="secadmin", reason="litigation", patient=arch_patient(arch, study), audit=sink)
    with pytest.raises(shred.RetentionError, match="legal hold"):
        shred.destroy_study(arch, study, policy="manual", signer=signer, audit=sink)
    assert read_plain(arch, study, sops[0])
    assert [e.outcome for e in sink.events if e.event_id == ev.STUDY_DELETED] == [ev.MINOR_FAILURE]
    shred.release_hold(arch._engine, pk, by="secadmin", audit=sink)
    shred.destroy_study(arch, study, policy="manual", signer=signer, audit=sink)
    with pytest.raises(NotFound):
        arch._data_key(study)


def arch_patient(arch, study_uid: str) -> str:
    from safepacs.index.models import Patient, Study

    with arch._engine.connect() as conn:
        return conn.scalar(select(Patient.patient_id).join(Study, Study.patient_pk == Patient.pk).where(Study.study_uid == study_uid))


def test_erasure_outside_policy_needs_security_admin_and_a_second_approver(archive, signer):
    arch, _ = archive
    study, sops = ingest_study(arch, 30, "PAT-E")
    other, other_sops = ingest_study(arch, 31, "PAT-E")  # same patient, another study
    sec = Principal(1, "sec", "security_admin")
    sysadm = Principal(2, "ops", "system_admin")
    auditor = Principal(3, "aud", "security_auditor")
    for approvers in ([], [sec], [sysadm, Principal(4, "doc", "physician")], [sec, sec], [sec, auditor]):
        with pytest.raises(shred.RetentionError):
            shred.destroy_study(arch, study, policy="erasure-request", signer=signer, approvers=approvers, erasure=True)
    assert read_plain(arch, study, sops[0])
    done = shred.destroy_study(arch, study, policy="erasure-request", signer=signer, approvers=[sec, sysadm], erasure=True)
    doc = json.loads(done.certificate)
    assert doc["basis"] == "erasure" and [a["role"] for a in doc["approvers"]] == ["security_admin", "system_admin"]
    assert verify_certificate(done.certificate, done.signature, signer.public_pem)
    with pytest.raises(NotFound):
        arch._data_key(study)
    # the patient's other study and identity stay
    assert read_plain(arch, other, other_sops[0])


def test_archive_reopens_after_kek_rotation(archive, archive_dir, signer, database_url):
    from safepacs.archive import Archive

    arch, _ = archive
    a, _ = ingest_study(arch, 40, "PAT-A")
    b, b_sops = ingest_study(arch, 41, "PAT-B")
    before = read_plain(arch, b, b_sops[0])
    old_id = arch._kek.key_id
    shred.destroy_study(arch, a, policy="manual", signer=signer)
    assert arch._kek.key_id != old_id
    new_study, new_sops = ingest_study(arch, 42, "PAT-C")  # a study created after rotation
    arch.close()
    with Archive.open(archive_dir, database_url=database_url) as again:
        assert read_plain(again, b, b_sops[0]) == before
        assert read_plain(again, new_study, new_sops[0])


def test_destroying_a_sealed_study_removes_shares_and_every_shard(archive, tmp_path, signer):
    from safepacs.retention.models import SealedShare
    from safepacs.store.blobs import LocalStore
    from safepacs.store.sealing import Vault, key_fingerprint
    from safepacs.store.split import SplitStore

    arch, _ = archive
    study, sops = ingest_study(arch, 50, "PAT-S")
    fingerprint = key_fingerprint(arch._data_key(study))
    nodes = SplitStore([LocalStore(tmp_path / f"n{i}") for i in range(5)], 3)
    vault = Vault(arch._engine, nodes, audit=MemorySink())
    for name in ("c1", "c2", "c3"):
        vault.add_custodian(name, "custodian passphrase " + name)
    vault.seal_study(arch, study, ["c1", "c2", "c3"], 2)
    arch.attach_vault(vault)
    assert sum(1 for n in nodes.nodes for _ in n.names()) == 5 * 2 * len(sops)
    done = shred.destroy_study(arch, study, policy="manual", signer=signer)
    assert json.loads(done.certificate)["key_fingerprints"] == [fingerprint]
    assert sum(1 for n in nodes.nodes for _ in n.names()) == 0
    with arch._engine.connect() as conn:
        assert conn.execute(select(SealedShare)).first() is None
    with pytest.raises(NotFound):
        arch._data_key(study)


def test_erasure_approved_through_access_control_approvals(archive, signer):
    from sqlalchemy.orm import Session

    from safepacs.access.models import Account, Approval, ApprovalVote

    arch, _ = archive
    study, _ = ingest_study(arch, 60, "PAT-X")
    assert shred.approvers_from_access(arch._engine, study) == []
    now = datetime.now()
    with Session(arch._engine) as s, s.begin():
        accts = [Account(username=u, role=r, created_at=now) for u, r in
                 (("doc", "physician"), ("sec", "security_admin"), ("ops", "system_admin"))]
        s.add_all(accts)
        s.flush()
        req = Approval(operation=shred.ERASURE_OPERATION, target=study, requested_by=accts[0].pk, status="pending", created_at=now)
        s.add(req)
        s.flush()
        s.add(ApprovalVote(approval_pk=req.pk, account_pk=accts[1].pk, role="security_admin", approve=True, at=now))
        req_pk, ops_pk = req.pk, accts[2].pk
    assert shred.approvers_from_access(arch._engine, study) == []  # not approved yet
    with Session(arch._engine) as s, s.begin():
        s.add(ApprovalVote(approval_pk=req_pk, account_pk=ops_pk, role="system_admin", approve=True, at=now))
        row = s.get(Approval, req_pk)
        row.status, row.decided_at = "approved", now
    approvers = shred.approvers_from_access(arch._engine, study)
    assert [p.role for p in approvers] == ["security_admin", "system_admin"]
    done = shred.destroy_study(arch, study, policy="erasure-request", signer=signer, approvers=approvers, erasure=True)
    assert json.loads(done.certificate)["approvers"] == [{"account": "sec", "role": "security_admin"},
                                                         {"account": "ops", "role": "system_admin"}]


def test_rendered_copies_of_a_destroyed_study_leave_every_render_cache(archive, archive_dir, signer):
    from tests.people import clinician_principal

    arch, _ = archive
    doomed, sops = ingest_study(arch, 70, "PAT-CACHED")
    doc = clinician_principal(arch)
    arch.read_instance(sops[0], principal=doc)  # rendered at the identified level, cached sealed
    cache = archive_dir / "cache"
    assert list(cache.rglob("*.rc"))  # the check below can fail: a sealed copy is on disk
    other = cache / "render-1"  # another live process's cache (pid 1 is alive)
    other.mkdir()
    (other / "x.rc").write_bytes(b"sealed render of some instance")
    shred.destroy_study(arch, doomed, policy="test", signer=signer)
    assert list(cache.rglob("*.rc")) == []
    assert all(arch.masking.cache.get(s, lvl) is None for s in sops for lvl in ("identified", "pseudonymised"))
