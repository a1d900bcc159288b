"""An AE title bound to an account with ``tls_cn`` reads only over TLS with a client
certificate of that name, signed by the site's CA; the same AE title and address without
it, or with another name, or with a certificate from another CA, is refused (0x0124)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydicom import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from safepacs.archive import Archive
from safepacs.dimse.scp import start
from safepacs.server import server_ssl_context
from tests.archive.objects import ct_bytes
from tests.server_harness import free_port


def _cert(dir_: Path, name: str, issuer: tuple | None = None, *, ca: bool = False) -> tuple[Path, Path, tuple]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_name, signer_key = (issuer[0], issuer[1]) if issuer else (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(signer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
    cert = builder.sign(signer_key, hashes.SHA256())
    cert_path, key_path = dir_ / f"{name}.pem", dir_ / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, (subject, key)


@pytest.fixture(scope="module")
def tls_scp(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    ca_pem, _, ca = _cert(d, "site-ca", ca=True)
    server_pem, server_key, _ = _cert(d, "safepacs", ca)
    _, _, rogue = _cert(d, "rogue-ca", ca=True)
    good = _cert(d, "viewer-1", ca)
    other = _cert(d, "viewer-2", ca)
    forged = _cert(d, "viewer-1-forged", rogue)
    archive, _ = Archive.create(d / "archive")
    archive.create_token("viewer-service")
    archive.ingest(ct_bytes("1.2.7.1"), source="t")
    port = free_port()
    server = start(archive, host="127.0.0.1", port=port, ae_title="SAFEPACS",
                   allowed_callers=[{"ae_title": "VIEWER", "host": "127.0.0.1", "account": "viewer-service",
                                     "tls_cn": "viewer-1"}],
                   ssl_context=server_ssl_context(server_pem, server_key, ca_pem))
    yield port, ca_pem, {"good": good, "other": other, "forged": forged}
    server.shutdown()
    archive.close()


def _find(port: int, ca_pem: Path, client: tuple | None) -> list[int]:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_pem))
    if client is not None:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    ae = AE(ae_title="VIEWER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="SAFEPACS", tls_args=(ctx, "127.0.0.1"))
    if not assoc.is_established:
        return []
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = ""
    try:
        return [int(status.Status) for status, _ in assoc.send_c_find(q, StudyRootQueryRetrieveInformationModelFind)
                if status is not None and "Status" in status]
    finally:
        assoc.release()


def test_the_named_client_certificate_reads(tls_scp):
    port, ca, certs = tls_scp
    statuses = _find(port, ca, certs["good"])
    assert 0xFF00 in statuses and statuses[-1] == 0x0000


@pytest.mark.parametrize("which", [None, "other", "forged"])
def test_no_certificate_another_name_or_another_ca_reads_nothing(tls_scp, which):
    port, ca, certs = tls_scp
    statuses = _find(port, ca, certs[which] if which else None)
    assert 0xFF00 not in statuses
    if which == "forged":  # refused at the handshake (untrusted CA) or by the SCP
        assert statuses in ([], [0x0124])
    else:  # the association stands; the SCP refuses to read for it
        assert statuses == [0x0124]
