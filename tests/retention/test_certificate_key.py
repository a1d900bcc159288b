"""The key that signs destruction certificates is wrapped by the archive's KEK like the other
service secrets: no plaintext copy in the data dir, the public half published, and an old
data dir's key file imported (same key) and shredded."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safepacs.archive.service import Archive
from safepacs.retention.certificate import KEY_FILE, PUB_FILE, Signer, export, verify_certificate
from safepacs.store import service_keys, signing_keys
from tests.store.legacy_keys import files_holding


def _forms(seed: bytes) -> list[bytes]:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return [seed, base64.b64encode(seed), seed.hex().encode(), der, pem]


def test_an_archive_signs_certificates_with_a_wrapped_key_and_publishes_only_its_public_half(tmp_path):
    archive, _ = Archive.create(tmp_path / "data")
    try:
        signer = Signer(archive.secrets)
        body, signature = signer.sign({"study": "2.25.1", "patient": "PSEUDO-1"})
        seed = archive.secrets.secret(service_keys.RETENTION_SIGNING)
        assert Signer(archive.secrets).key_id == signer.key_id  # one key, created once
    finally:
        archive.close()
    keys = tmp_path / "data" / "keys"
    assert not (keys / KEY_FILE).exists()
    assert (keys / PUB_FILE).read_bytes() == signer.public_pem
    assert verify_certificate(body, signature, (keys / PUB_FILE).read_bytes())
    assert files_holding(tmp_path / "data", _forms(seed)) == []
    assert export(body, signature, signer.public_pem)


def test_an_old_key_file_is_imported_as_the_same_key_and_shredded(tmp_path):
    archive, _ = Archive.create(tmp_path / "data")
    archive.close()
    keys = tmp_path / "data" / "keys"
    old = signing_keys.load_or_create(keys / KEY_FILE, keys / PUB_FILE)  # as earlier versions kept it
    old_pem = signing_keys.public_pem(old)
    archive = Archive.open(tmp_path / "data")
    try:
        signer = Signer(archive.secrets)
        seed = archive.secrets.secret(service_keys.RETENTION_SIGNING)
    finally:
        archive.close()
    assert signer.public_pem == old_pem  # certificates signed before still verify
    assert not (keys / KEY_FILE).exists() and not list(keys.glob("*.shred"))
    assert files_holding(tmp_path / "data", _forms(seed)) == []
