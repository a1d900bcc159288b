"""Destruction certificates: canonical JSON signed with the site's Ed25519 key.

An archive keeps the signing key's seed wrapped by its KEK (:mod:`safepacs.store.service_keys`),
created on first use; a bare folder (a component used on its own, or a data dir from before,
whose file an archive imports and shreds on open) holds it as KEYS_DIR/retention-signing.key
(PKCS#8 PEM, mode 0600).  The public half is published beside it (``.pub``): what a verifier
needs.  A certificate names
the study by de-identified UID and the patient by pseudonym only.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from safepacs.errors import SafepacsError
from safepacs.store import signing_keys

if TYPE_CHECKING:
    from safepacs.store.service_keys import SecretSource

KEY_FILE = "retention-signing.key"
PUB_FILE = "retention-signing.pub"
KIND = "safepacs-destruction-certificate"


class CertificateError(SafepacsError):
    """No usable signing key, or a malformed certificate."""


def canonical(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def new_secret() -> bytes:
    """A new signing key's 32-byte seed."""
    return Ed25519PrivateKey.generate().private_bytes_raw()


def read_key_file(path: Path) -> bytes:
    """The seed of the key in a ``retention-signing.key`` file (PKCS#8 PEM, mode 0600)."""
    try:
        return signing_keys.load_or_create(Path(path), None, create=False).private_bytes_raw()
    except signing_keys.SigningKeyError as exc:
        raise CertificateError(str(exc)) from None


class Signer:
    """Holds the site's signing key: an archive's wrapped secret, or the key file of a bare
    folder; created on first use, its public half published as ``retention-signing.pub``."""

    def __init__(self, keys: Path | SecretSource) -> None:
        from safepacs.store.service_keys import RETENTION_SIGNING

        try:
            loaded = signing_keys.load_signing_key(keys, RETENTION_SIGNING, KEY_FILE, PUB_FILE, new_secret)
        except signing_keys.SigningKeyError as exc:
            raise CertificateError(str(exc)) from None
        self._key = loaded
        self.public_pem = signing_keys.public_pem(loaded)
        self.key_id = hashlib.sha256(self.public_pem).hexdigest()[:16]

    def sign(self, doc: dict) -> tuple[str, str]:
        """(canonical JSON of ``doc`` with the signer's key id, base64 Ed25519 signature)."""
        body = canonical({**doc, "kind": KIND, "signing_key": self.key_id})
        return body, base64.b64encode(self._key.sign(body.encode("utf-8"))).decode()


def verify_certificate(certificate: str, signature: str, public_pem: bytes) -> bool:
    """True only when ``signature`` is the signing key's over exactly these bytes."""
    try:
        key = serialization.load_pem_public_key(public_pem)
        if not isinstance(key, Ed25519PublicKey):
            return False
        key.verify(base64.b64decode(signature, validate=True), certificate.encode("utf-8"))
        doc = json.loads(certificate)
    except (InvalidSignature, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("kind") == KIND


def export(certificate: str, signature: str, public_pem: bytes) -> str:
    """One self-contained JSON document: the certificate, its signature, the public key."""
    return json.dumps(
        {"certificate": json.loads(certificate), "certificate_json": certificate,
         "signature": signature, "public_key_pem": public_pem.decode("ascii")},
        indent=1, ensure_ascii=False,
    )
