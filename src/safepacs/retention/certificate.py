"""Destruction certificates: canonical JSON signed with the site's Ed25519 key.

The signing key lives in KEYS_DIR/retention-signing.key (PKCS#8 PEM, mode 0600), created on
first use; its public half beside it (``.pub``) is what a verifier needs.  A certificate names
the study by de-identified UID and the patient by pseudonym only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from safepacs.errors import SafepacsError

KEY_FILE = "retention-signing.key"
PUB_FILE = "retention-signing.pub"
KIND = "safepacs-destruction-certificate"


class CertificateError(SafepacsError):
    """No usable signing key, or a malformed certificate."""


def canonical(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Signer:
    """Holds the site's signing key (loaded or created in ``keys_dir``)."""

    def __init__(self, keys_dir: Path) -> None:
        keys_dir = Path(keys_dir)
        path = keys_dir / KEY_FILE
        if not path.exists():
            keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process created it first
                pass
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
                    fh.flush()
                    os.fsync(fh.fileno())
        if path.stat().st_mode & 0o077:
            raise CertificateError(f"{path}: signing key must have mode 0600")
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError:
            raise CertificateError(f"{path}: not a PEM private key") from None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise CertificateError(f"{path}: not an Ed25519 key")
        self._key = loaded
        self.public_pem = loaded.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pub = keys_dir / PUB_FILE
        if not pub.exists() or pub.read_bytes() != self.public_pem:
            pub.write_bytes(self.public_pem)
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
