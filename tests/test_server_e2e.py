"""``safepacs serve`` as a real process, on SQLite and PostgreSQL: dicomweb-client and DCMTK
store, search and retrieve; SIGKILL during a STOW-RS load loses nothing acknowledged; no
plaintext under the data dir or in the database; TLS on both ports."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import re
import shutil
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from sqlalchemy import create_engine, select

from safepacs.api import multipart
from safepacs.archive.service import Archive
from safepacs.index.db import normalise_url
from safepacs.index.models import Instance
from safepacs.store.blobs import LocalStore
from safepacs.synth import AnswerKey, generate
from tests.archive_fixtures import dump_database
from tests.people import clinician
from tests.planted import found_in
from tests.server_harness import Server, configure, free_port

needs_dcmtk = pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK is not installed")
DICOM_MP = 'multipart/related; type="application/dicom"; boundary=e2e'


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[list[Path], AnswerKey]:
    root = tmp_path_factory.mktemp("e2ecorpus")
    key = generate(root / "in", 200, 21, small=True)
    (root / "in" / "answer_key.json").rename(root / "answer_key.json")
    return sorted((root / "in").rglob("*.dcm")), key


def new_server(root: Path, database_url: str | None, **settings) -> tuple[Server, str]:
    archive, _admins = Archive.create(root / "data", database_url=database_url)
    token = archive.create_token("e2e-reader")
    archive.close()
    http_port, dicom_port = configure(root / "data", database_url, **settings)
    return Server(root / "data", http_port, dicom_port, database_url,
                  tls_ca=settings.get("tls_cert") and Path(settings["tls_cert"])), token


def assert_no_plaintext(data_dir: Path, database_url: str | None, key: AnswerKey, sent: set[str]) -> None:
    """No planted value of the files sent, in any common encoding, in any file or DB row."""
    needles: set[bytes] = set()
    for p in key.planted:
        if p.file in sent and not p.retained_by and len(p.value) >= 6:
            for enc in ("utf-8", "gb18030", "latin-1", "utf-16-le"):
                try:
                    needles.add(p.value.encode(enc))
                except UnicodeEncodeError:
                    pass
    assert needles
    haystacks = [f.read_bytes() for f in data_dir.rglob("*") if f.is_file()]
    haystacks.append(dump_database(database_url, data_dir))
    for hay in haystacks:
        for n in needles:
            # a date such as 19730303 can turn up inside a 39-digit "2.25." UID by chance (it
            # did once in CI): numbers count only where they stand alone
            assert not found_in(n, hay), "a planted identifying value is stored in the clear"


def assert_no_orphans(data_dir: Path, database_url: str | None) -> int:
    url = database_url or f"sqlite:///{data_dir / 'index.sqlite'}"
    engine = create_engine(normalise_url(url))
    with engine.connect() as conn:
        referenced = {n for row in conn.execute(select(Instance.object_blob, Instance.delta_blob)) for n in row}
    engine.dispose()
    present = set(LocalStore(data_dir / "blobs").names())
    assert present == referenced
    return len(referenced) // 2


def rel(path: Path) -> str:
    parts = path.parts
    return "/".join(parts[parts.index("in") + 1 :])


@needs_dcmtk
def test_dicomweb_and_dimse_clients_against_a_served_archive(tmp_path, database_url, corpus):
    files, key = corpus
    dest_port = free_port()
    callers = [{"ae_title": ae, "host": "127.0.0.1", "account": "e2e-reader"}
               for ae in ("FINDSCU", "GETSCU", "MOVESCU")] + [{"ae_title": "*", "host": "127.0.0.1"}]
    server, token = new_server(tmp_path, database_url, allowed_callers=callers,
                               move_destinations={"DEST": {"host": "127.0.0.1", "port": dest_port,
                                                           "callers": ["MOVESCU"]}})
    web_files, dimse_files = files[:16], files[16:28]
    server.start()
    try:
        c = DICOMwebClient(f"{server.url}/dicomweb", headers={"Authorization": f"Bearer {token}"})
        response = c.store_instances([pydicom.dcmread(f) for f in web_files])
        assert len(response.ReferencedSOPSequence) == len(web_files)
        archive = Archive.open(server.data_dir, database_url=database_url)  # beside the server
        ident = clinician(archive, "clinician")[1]  # cares for the patients just stored
        archive.close()
        # search: exact name with ^, percent-encoded wildcard, Chinese intact (identity reader)
        ci = DICOMwebClient(f"{server.url}/dicomweb", headers={"Authorization": f"Bearer {ident}"})
        originals = [pydicom.dcmread(f, stop_before_pixels=True) for f in web_files]
        cjk = next(d for d in originals if "=" in str(d.PatientName) and not str(d.PatientName).isascii())
        alphabetic, ideographic = str(cjk.PatientName).split("=")[:2]
        hits = ci.search_for_studies(search_filters={"PatientName": alphabetic})
        assert hits and all(h["00100010"]["Value"][0]["Alphabetic"].upper() == alphabetic.upper() for h in hits)
        assert any(h["00100010"]["Value"][0].get("Ideographic") == ideographic for h in hits)
        family = alphabetic.split("^")[0]
        assert ci.search_for_studies(search_filters={"PatientName": family[:3] + "*"})
        assert c.search_for_studies(search_filters={"PatientName": alphabetic}) == []
        # retrieve what was stored, byte for byte what the archive holds
        first = response.ReferencedSOPSequence[0]
        st, _, se, _, sop = str(first.RetrieveURL).split("/studies/")[1].split("/")
        assert c.retrieve_instance(st, se, sop).SOPInstanceUID == sop

        port = str(server.dicom_port)
        assert subprocess.run(["echoscu", "-aec", "SAFEPACS", "127.0.0.1", port], timeout=60).returncode == 0
        r = subprocess.run(["storescu", "-aec", "SAFEPACS", "127.0.0.1", port, *map(str, dimse_files)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        n_total = len(c.search_for_instances())
        assert n_total == len(web_files) + len(dimse_files)
        out = tmp_path / "find"
        out.mkdir()
        r = subprocess.run(["findscu", "-S", "-aec", "SAFEPACS", "-X", "-od", str(out), "127.0.0.1", port,
                            "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-k", "PatientID"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert len(list(out.glob("rsp*.dcm"))) == len(c.search_for_studies())
        got = tmp_path / "get"
        got.mkdir()
        r = subprocess.run(["getscu", "-S", "-aec", "SAFEPACS", "-od", str(got), "127.0.0.1", port,
                            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={st}"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert sop in {str(pydicom.dcmread(f).SOPInstanceUID) for f in got.iterdir()}
        moved = tmp_path / "moved"
        moved.mkdir()
        dest = subprocess.Popen(["storescp", "-aet", "DEST", "-od", str(moved), str(dest_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            r = subprocess.run(["movescu", "-S", "-aec", "SAFEPACS", "-aem", "DEST", "127.0.0.1", port,
                                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={st}"],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
        finally:
            dest.terminate()
            dest.wait(10)
        assert sop in {str(pydicom.dcmread(f).SOPInstanceUID) for f in moved.iterdir()}
    finally:
        assert server.stop() == 0
    log = server.log.read_text(encoding="utf-8", errors="replace")
    assert "safepacs stopped" in log
    assert alphabetic.split("^")[0] not in log  # query strings are never logged
    assert_no_plaintext(server.data_dir, database_url, key, {rel(f) for f in web_files + dimse_files})


def _post(url: str, token: str, data: bytes) -> httpx.Response:
    body = b"".join(multipart.encode(iter([("application/dicom", data)]), "e2e"))
    return httpx.post(url + "/dicomweb/studies", content=body, timeout=60,
                      headers={"Content-Type": DICOM_MP, "Authorization": f"Bearer {token}"})


def test_sigkill_during_stow_load_loses_nothing_acknowledged(tmp_path, database_url, corpus):
    files, key = corpus
    rng = random.Random(7)
    server, token = new_server(tmp_path, database_url)
    server.start()
    acked: dict[str, str | None] = {}  # de-identified SOP UID -> sha256 retrieved right after the ack
    kills = 0
    timer: threading.Timer | None = None

    def arm() -> threading.Timer:
        t = threading.Timer(rng.uniform(0.3, 2.0), server.kill)
        t.start()
        return t

    timer = arm()
    i = 0
    try:
        while i < len(files):
            try:
                r = _post(server.url, token, files[i].read_bytes())
            except httpx.HTTPError:
                server.proc.wait(30)
                kills += 1
                server.start()
                if kills < 4:
                    timer = arm()
                continue  # the unacknowledged file is sent again
            if r.status_code != 200:
                if server.proc.poll() is not None:
                    continue
                pytest.fail(f"unexpected status {r.status_code}")
            item = r.json()["00081199"]["Value"][0]
            sop = item["00081155"]["Value"][0]
            digest = None
            try:
                g = httpx.get(item["00081190"]["Value"][0], headers={"Authorization": f"Bearer {token}"}, timeout=60)
                if g.status_code == 200:
                    digest = hashlib.sha256(g.content.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]).hexdigest()
            except httpx.HTTPError:
                pass
            acked[sop] = digest
            i += 1
    finally:
        if timer is not None:
            timer.cancel()
    assert kills >= 3
    server.kill()
    server.start()  # recovery runs on open
    assert server.stop() == 0
    archive = Archive.open(server.data_dir, database_url=database_url)
    try:
        who = archive.authenticate(token)
        for sop, digest in acked.items():
            data = archive.read_instance(sop, principal=who)
            if digest is not None:
                assert hashlib.sha256(data).hexdigest() == digest
        assert archive.status()["instances"] == len(acked) == len(files)
    finally:
        archive.close()
    assert assert_no_orphans(server.data_dir, database_url) == len(files)
    assert not [p for p in (server.data_dir / "blobs").rglob("*") if p.is_file() and re.search(r"\.(tmp|part)$", p.name)]
    assert_no_plaintext(server.data_dir, database_url, key, {rel(f) for f in files})


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "safepacs test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_tls_on_both_ports(tmp_path, corpus):
    files, _ = corpus
    cert, key = _self_signed(tmp_path)
    server, token = new_server(tmp_path, None, tls_cert=str(cert), tls_key=str(key))
    server.start()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        r = httpx.post(server.url + "/dicomweb/studies", verify=ctx, timeout=60,
                       content=b"".join(multipart.encode(iter([("application/dicom", files[0].read_bytes())]), "e2e")),
                       headers={"Content-Type": DICOM_MP, "Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        q = httpx.get(server.url + "/dicomweb/studies", verify=ctx, headers={"Authorization": f"Bearer {token}"})
        assert q.status_code == 200 and len(q.json()) == 1
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.http_port}/dicomweb/studies", timeout=5,
                      headers={"Authorization": f"Bearer {token}"}).raise_for_status()
        ae = AE(ae_title="TLSSCU")
        ae.add_requested_context(Verification)
        client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title="SAFEPACS", tls_args=(client_ctx, "127.0.0.1"))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
        plain = AE(ae_title="PLAIN")
        plain.add_requested_context(Verification)
        plain.acse_timeout = plain.network_timeout = 5
        assert not plain.associate("127.0.0.1", server.dicom_port, ae_title="SAFEPACS").is_established
    finally:
        assert server.stop() == 0
