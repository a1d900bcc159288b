"""Issue 8's "must hold" list against a real ``safepacs serve`` process (SQLite: the data dir
is copied whole): retention on the
server's own timer destroys a study so that no API, no CLI, no copy of the data dir and no
backup recovers it, while a held study survives and reads move "from last access" expiry;
a sealed study is refused with a clear answer on DICOMweb and DIMSE; an archive on split
storage (k=3, n=5) serves bit for bit with two nodes lost, fails closed with three, and
``safepacs storage repair`` restores it."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydicom import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet
from typer.testing import CliRunner

from safepacs.api import multipart
from safepacs.archive import Archive
from safepacs.cli import app
from safepacs.retention import shred
from safepacs.store import crypto
from safepacs.store.sealing import SEALED_MESSAGE, Vault
from safepacs.store.split import open_split, split_url
from tests.archive.objects import ct_bytes
from tests.retention.stored import blobs_of, opens, remaining_keys
from tests.server_harness import Server, configure

runner = CliRunner()
ROOT = "1.2.826.0.1.3680043.99"
MP = 'multipart/related; type="application/dicom"; boundary=served'
PHRASE = "custodian passphrase number "


def new_server(root: Path, *, store_url: str | None = None, **settings) -> tuple[Server, str]:
    archive, _ = Archive.create(root / "data", store_url=store_url)
    token = archive.create_token("served-reader")
    archive.close()
    http_port, dicom_port = configure(root / "data", None, **settings)
    return Server(root / "data", http_port, dicom_port), token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stow(server: Server, token: str, objects: list[bytes]) -> list[str]:
    """STOW-RS; returns the instance RetrieveURLs (de-identified UIDs) in order."""
    body = b"".join(multipart.encode(iter([("application/dicom", o) for o in objects]), "served"))
    r = httpx.post(server.url + "/dicomweb/studies", content=body, timeout=60,
                   headers={"Content-Type": MP, "Accept": "application/dicom+json", **auth(token)})
    assert r.status_code == 200, r.text
    return [item["00081190"]["Value"][0] for item in r.json()["00081199"]["Value"]]


def study_objects(n: int, patient: str, *, count: int = 2, modality: str = "CT") -> list[bytes]:
    return [ct_bytes(f"{ROOT}.{n}.1.{i}", study=f"{ROOT}.{n}", series=f"{ROOT}.{n}.1", patient_id=patient,
                     accession=f"ACC{n}", pixel=n + i, modality=modality) for i in range(count)]


def study_of(url: str) -> str:
    return url.split("/studies/")[1].split("/")[0]


def wado(server: Server, token: str, url: str) -> httpx.Response:
    return httpx.get(url, headers={"Accept": 'multipart/related; type="application/dicom"', **auth(token)}, timeout=60)


def one_part(r: httpx.Response) -> bytes:
    assert r.status_code == 200, r.text
    boundary = r.headers["content-type"].split("boundary=")[1].strip('"')
    (part,) = [p for p in r.content.split(b"--" + boundary.encode()) if b"\r\n\r\n" in p]
    return part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]


def qido_studies(server: Server, token: str) -> set[str]:
    r = httpx.get(server.url + "/dicomweb/studies", headers=auth(token), timeout=60)
    assert r.status_code in (200, 204), r.text
    return {s["0020000D"]["Value"][0] for s in (r.json() if r.status_code == 200 else [])}


def cli(*args: str) -> object:
    return runner.invoke(app, list(args))


def key_files(data_dir: Path) -> list[bytes]:
    """Every 32-byte secret written under DATA_DIR/keys (raw or base64 in a text file)."""
    import base64

    found = []
    for path in (data_dir / "keys").rglob("*"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        candidates = [raw, raw.strip()]
        for token in raw.replace(b":", b" ").split():
            try:
                candidates.append(base64.b64decode(token, validate=True))
            except ValueError:
                pass
        found += [c for c in candidates if len(c) == 32]
    return found


# --- retention on the server's timer -----------------------------------------------------
def test_served_retention_destroys_for_good_keeps_held_and_last_access_moves_expiry(tmp_path):
    server, token = new_server(tmp_path, retention_interval_s=1)
    data = server.data_dir
    server.start()
    try:
        doomed_urls = stow(server, token, study_objects(10, "PAT-DOOMED"))
        kept_urls = stow(server, token, study_objects(11, "PAT-KEPT", modality="MR"))
        held_urls = stow(server, token, study_objects(12, "PAT-HELD", count=1))
        doomed, kept, held = study_of(doomed_urls[0]), study_of(kept_urls[0]), study_of(held_urls[0])
        before = {u: one_part(wado(server, token, u)) for u in doomed_urls + kept_urls + held_urls}
        assert qido_studies(server, token) == {doomed, kept, held}
    finally:
        assert server.stop() == 0
    # the server's reads were recorded for "from last access" policies
    with sqlite3.connect(data / "index.sqlite") as conn:
        accessed = dict(conn.execute("SELECT study_uid, last_access FROM retention_studies").fetchall())
    assert set(accessed) == {doomed, kept, held}
    # the kept study was stored 30 days ago (as far as the index knows), read just now
    with sqlite3.connect(data / "index.sqlite") as conn:
        conn.execute("UPDATE instances SET created_at = ? WHERE series_pk IN (SELECT s.pk FROM series s "
                     "JOIN studies t ON s.study_pk = t.pk WHERE t.study_uid = ?)",
                     ((datetime.now() - timedelta(days=30)).isoformat(sep=" "), kept))
    policies = {"policies": [
        {"name": "ct-now", "match": {"modalities": ["CT"]}, "keep_days": 0, "from": "study_date"},
        {"name": "mr-idle", "match": {"modalities": ["MR"]}, "keep_days": 7, "from": "last_access"}]}
    (data / "retention.json").write_text(json.dumps(policies))
    arch = Archive.open(data)
    try:
        (entry,) = [e for e in shred.current_plan(arch) if e.study_uid == kept]
    finally:
        arch.close()
    # stored 30 days ago as far as the index knows, but read today: due in a week, not gone
    assert entry.policy == "mr-idle" and not entry.expired
    assert timedelta(days=6) < entry.due - datetime.now() < timedelta(days=8)
    assert cli("retention", "hold", "--data-dir", str(data), "--study", held, "--reason", "case 2026-4",
               "--by", "secadmin").exit_code == 0
    # copies taken before destruction: every file of the data dir, and a backup
    arch = Archive.open(data)
    try:
        blobs = blobs_of(arch, doomed)
        live_before = remaining_keys(arch, data)
    finally:
        arch.close()
    contexts = [p + sop.encode() for sop, _, _ in blobs for p in (b"object\x00", b"delta\x00")]
    copy = tmp_path / "copy-before"
    shutil.copytree(data, copy)
    assert cli("backup", "--data-dir", str(data), str(tmp_path / "backup")).exit_code == 0
    assert opens(live_before, (copy / "blobs" / blobs[0][1]).read_bytes(), contexts)  # the check can fail

    server.start()  # the retention timer runs a second after start
    try:
        deadline = time.monotonic() + 60
        while doomed in qido_studies(server, token) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert qido_studies(server, token) == {kept, held}
        for url in doomed_urls:  # WADO (instance, series, study) and metadata: not found
            for u in (url, url.split("/instances/")[0], url.split("/series/")[0]):
                assert wado(server, token, u).status_code == 404
                assert httpx.get(u + "/metadata", headers=auth(token), timeout=60).status_code == 404
        r = httpx.get(server.url + f"/dicomweb/studies?StudyInstanceUID={doomed}", headers=auth(token), timeout=60)
        assert r.status_code == 204 or r.json() == []
        for url in kept_urls + held_urls:  # the others: bit for bit
            assert one_part(wado(server, token, url)) == before[url]
        # the CLI (beside the live server) no longer knows it either
        res = cli("retention", "plan", "--all", "--data-dir", str(data))
        assert res.exit_code == 0 and "0 of 2 studies due for destruction" in res.output, res.output
    finally:
        assert server.stop() == 0
    log = server.log.read_text(errors="replace")
    assert "Retention: expired studies are destroyed every" in log

    # nothing that remains opens any blob of the copy or of the backup
    arch = Archive.open(data)
    try:
        keys = remaining_keys(arch, data) + key_files(data)
        assert blobs_of(arch, doomed) == []
    finally:
        arch.close()
    old = [folder / name for folder in (copy / "blobs", tmp_path / "backup" / "blobs")
           for _, obj, dlt in blobs for name in (obj, dlt)]
    assert len(old) == 8 and all(p.exists() for p in old)
    for path in old:
        assert not opens(keys, path.read_bytes(), contexts)
    with sqlite3.connect(copy / "index.sqlite") as conn:  # its wrapped key: dead under the new KEK
        (wrapped,) = conn.execute("SELECT wrapped FROM data_keys WHERE study_uid = ?", (doomed,)).fetchone()
    with pytest.raises(crypto.CryptoError):
        crypto.load_kek("file:keys/kek.key", data).unwrap(wrapped, b"study:" + doomed.encode())
    with sqlite3.connect(tmp_path / "backup" / "index.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM data_keys").fetchone() == (0,)
    for path in data.rglob("*"):  # no stored blob of it left in the live data dir
        if path.is_file() and path.parent.parent.name == "blobs":
            assert path.name not in {Path(n).name for _, o, d in blobs for n in (o, d)}
    # the certificate: exported signed, and it verifies
    res = cli("retention", "certificates", "--data-dir", str(data), "--study", doomed)
    assert res.exit_code == 0, res.output
    (line,) = res.stdout.strip().splitlines()
    doc = json.loads(line)["certificate"]
    assert doc["study_uid"] == doomed and doc["policy"] == "ct-now" and doc["kek_rotated"] is True
    assert len(doc["blobs_deleted"]) == 4
    (tmp_path / "cert.json").write_text(line)
    assert cli("retention", "verify", str(tmp_path / "cert.json")).exit_code == 0


# --- sealed studies ----------------------------------------------------------------------
def test_sealed_study_is_refused_with_403_on_dicomweb_and_a_failure_status_on_dimse(tmp_path):
    data = tmp_path / "data"
    arch, _ = Archive.create(data)
    try:
        sealed = arch.ingest(ct_bytes(f"{ROOT}.20.1.1", study=f"{ROOT}.20", series=f"{ROOT}.20.1"), source="t")
        other = arch.ingest(ct_bytes(f"{ROOT}.21.1.1", study=f"{ROOT}.21", series=f"{ROOT}.21.1", pixel=3), source="t")
        token = arch.create_token("served-reader")
        nodes = [f"file://{tmp_path / f'node{i}'}" for i in range(5)]
        (data / "sealing.json").write_text(json.dumps({"k": 3, "nodes": nodes}))
        vault = Vault(arch._engine, open_split(split_url(3, nodes)))
        for i in range(3):
            vault.add_custodian(f"custodian{i}", PHRASE + str(i), by="secadmin")
        vault.seal_study(arch, sealed.study_uid, ["custodian0", "custodian1", "custodian2"], 2, by="secadmin")
    finally:
        arch.close()
    callers = [{"ae_title": "GETSCU", "host": "127.0.0.1", "account": "served-reader"}]
    http_port, dicom_port = configure(data, None, allowed_callers=callers, retention_interval_s=0)
    server = Server(data, http_port, dicom_port)
    server.start()
    try:
        base = f"{server.url}/dicomweb/studies/{sealed.study_uid}"
        for url in (base, f"{base}/series/{sealed.series_uid}/instances/{sealed.sop_instance_uid}",
                    f"{base}/metadata"):
            r = httpx.get(url, headers=auth(token), timeout=60)
            assert r.status_code == 403, r.text
            assert r.json()["error"] == SEALED_MESSAGE
            assert sealed.study_uid not in r.text and "PID7734120" not in r.text
        assert httpx.get(base, timeout=60).status_code == 401  # no token: nothing about it
        assert httpx.get(f"{server.url}/dicomweb/studies/{ROOT}.99", headers=auth(token), timeout=60).status_code == 404
        r = httpx.get(f"{server.url}/dicomweb/studies/{other.study_uid}", headers=auth(token), timeout=60)
        assert r.status_code == 200
        # DIMSE C-GET: a failure status of the 0xC000 range with a fixed comment, no object
        statuses, received = c_get(dicom_port, sealed.study_uid)
        assert received == []
        final = statuses[-1]
        assert 0xC000 <= final.Status <= 0xCFFF
        assert "sealed" in final.ErrorComment and sealed.study_uid not in str(final)
        statuses, received = c_get(dicom_port, other.study_uid)
        assert statuses[-1].Status == 0x0000 and len(received) == 1
    finally:
        assert server.stop() == 0


def c_get(port: int, study_uid: str) -> tuple[list[Dataset], list[str]]:
    received: list[str] = []

    def on_store(event):  # type: ignore[no-untyped-def]
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    from pynetdicom import build_role

    assoc = ae.associate("127.0.0.1", port, ae_title="SAFEPACS", ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    try:
        statuses = [status for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet) if status]
    finally:
        assoc.release()
    return statuses, received


# --- the archive on split storage --------------------------------------------------------
def test_split_store_serves_with_two_nodes_lost_fails_closed_with_three_and_repair_restores(tmp_path):
    nodes = [tmp_path / f"node{i}" for i in range(5)]
    server, token = new_server(tmp_path, store_url=split_url(3, [f"file://{n}" for n in nodes]),
                               retention_interval_s=0)
    server.start()
    try:
        urls = stow(server, token, study_objects(30, "PAT-SPLIT"))
        before = {u: one_part(wado(server, token, u)) for u in urls}
        for node in nodes[:2]:
            shutil.rmtree(node)
        for u in urls:  # two of five lost: bit for bit
            assert one_part(wado(server, token, u)) == before[u]
        res = cli("storage", "scrub", "--data-dir", str(server.data_dir))
        assert res.exit_code == 1, res.output  # damage found
        res = cli("storage", "repair", "--data-dir", str(server.data_dir))
        assert res.exit_code == 0, res.output
        assert cli("storage", "scrub", "--data-dir", str(server.data_dir)).exit_code == 0
        assert all(any(n.rglob("*")) for n in nodes[:2])
        # three lost (moved away): a clear failure, nothing of the object, no identifier
        for node in nodes[2:]:
            node.rename(node.with_name(node.name + "-away"))
        for u in urls:
            r = wado(server, token, u)
            assert r.status_code == 500
            assert r.json()["error"].startswith("stored object unavailable")
            assert study_of(u) not in r.text and before[u][-16:] not in r.content
        for node in nodes[2:]:
            node.with_name(node.name + "-away").rename(node)
        for u in urls:
            assert one_part(wado(server, token, u)) == before[u]
    finally:
        assert server.stop() == 0
