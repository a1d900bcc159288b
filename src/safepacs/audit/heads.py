"""Signed tree heads: the Ed25519 signing key, the signed message, checking a head.

The signed bytes follow the C2SP checkpoint idea (origin line, size, base64 root) plus a
timestamp, so a head cannot be replayed under another log or time.  The signing key never
leaves the service: an archive keeps its 32-byte seed wrapped by the KEK
(:mod:`safepacs.store.service_keys`); a bare folder (the log used on its own, or a data dir
from before, imported and shredded on open) holds ``audit-signing.key`` (PKCS#8 PEM, mode
0600).  Either way the auditor gets ``keys/audit-signing.pub`` and needs nothing else.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from safepacs.errors import SafepacsError
from safepacs.store import signing_keys

if TYPE_CHECKING:
    from safepacs.store.service_keys import SecretSource

ORIGIN = b"safepacs-audit/v1"
KEY_FILE = "audit-signing.key"
PUBLIC_FILE = "audit-signing.pub"


class AuditKeyError(SafepacsError):
    """The audit signing or public key cannot be read."""


@dataclass(frozen=True)
class SignedHead:
    size: int
    root: bytes
    timestamp: int  # ms since the epoch, UTC
    signature: bytes
    key_id: str

    def to_dict(self) -> dict:
        return {
            "size": self.size,
            "root": self.root.hex(),
            "timestamp": self.timestamp,
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "key_id": self.key_id,
        }

    @classmethod
    def from_dict(cls, d: dict) -> SignedHead:
        """Parse; raises ValueError/KeyError/TypeError on anything malformed."""
        size, ts = d["size"], d["timestamp"]
        if not isinstance(size, int) or not isinstance(ts, int) or size < 0:
            raise ValueError("size and timestamp must be integers")
        root = bytes.fromhex(d["root"])
        if len(root) != 32:
            raise ValueError("root must be 32 bytes")
        return cls(size, root, ts, base64.b64decode(d["signature"], validate=True), str(d["key_id"]))


def message(size: int, root: bytes, timestamp: int) -> bytes:
    """The bytes a head's signature covers."""
    return b"%s\n%d\n%s\n%d\n" % (ORIGIN, size, base64.b64encode(root), timestamp)


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise AuditKeyError(f"{path}: not a readable PEM public key ({exc.__class__.__name__})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditKeyError(f"{path}: not an Ed25519 public key")
    return key


def new_secret() -> bytes:
    """A new signing key's 32-byte seed."""
    return Ed25519PrivateKey.generate().private_bytes_raw()


def read_key_file(path: Path) -> bytes:
    """The seed of the key in an ``audit-signing.key`` file (PKCS#8 PEM, mode 0600)."""
    path = Path(path)
    try:
        if path.stat().st_mode & 0o077:
            raise AuditKeyError(f"{path}: signing key must have mode 0600")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise AuditKeyError(f"{path}: unreadable signing key ({exc.__class__.__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"{path}: not an Ed25519 key")
    return key.private_bytes_raw()


class Signer:
    """Signs heads with the service's key (an archive's wrapped secret, or the key file of a
    bare folder), creating it on first use; publishes the public half as ``audit-signing.pub``."""

    def __init__(self, keys: Path | SecretSource) -> None:
        from safepacs.store.service_keys import AUDIT_SIGNING

        try:
            key = signing_keys.load_signing_key(keys, AUDIT_SIGNING, KEY_FILE, PUBLIC_FILE, new_secret)
        except signing_keys.SigningKeyError as exc:
            raise AuditKeyError(str(exc)) from None
        self._key = key
        self.public_key = key.public_key()
        self.key_id = key_id(self.public_key)

    def sign(self, size: int, root: bytes, timestamp: int) -> SignedHead:
        sig = self._key.sign(message(size, root, timestamp))
        return SignedHead(size, root, timestamp, sig, self.key_id)


def head_is_signed(head: SignedHead, public: Ed25519PublicKey) -> bool:
    try:
        public.verify(head.signature, message(head.size, head.root, head.timestamp))
    except InvalidSignature:
        return False
    return True
