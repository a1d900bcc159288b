"""The access core's secret: one 32-byte key file (mode 0600) in the data dir's keys folder,
from which the JWT signing key and the TOTP sealing key are derived (HKDF, distinct labels),
so rotating one file rotates both and neither key is ever used for two jobs."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from safepacs.access.errors import AccessError

KEY_FILE = "access.key"


def _derive(secret: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"safepacs-access:" + label).derive(secret)


@dataclass(frozen=True)
class AccessKeys:
    jwt: bytes
    seal: bytes

    @classmethod
    def from_secret(cls, secret: bytes) -> AccessKeys:
        return cls(jwt=_derive(secret, b"jwt-hs256"), seal=_derive(secret, b"totp-seal"))

    def seal_value(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self.seal).encrypt(nonce, plaintext, context)

    def open_value(self, sealed: bytes, context: bytes) -> bytes:
        try:
            return AESGCM(self.seal).decrypt(sealed[:12], sealed[12:], context)
        except Exception:
            raise AccessError("a sealed access secret cannot be opened (wrong key?)") from None


def load_keys(keys_dir: Path, *, create: bool = True) -> AccessKeys:
    """Read (or create, mode 0600) ``keys_dir/access.key``."""
    keys_dir = Path(keys_dir)
    path = keys_dir / KEY_FILE
    if not path.exists():
        if not create:
            raise AccessError("the access key file is missing")
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
    if path.stat().st_mode & 0o077:
        raise AccessError("the access key file must be readable by its owner only (chmod 600)")
    secret = path.read_bytes()
    if len(secret) != 32:
        raise AccessError("the access key file is malformed (expected 32 bytes)")
    return AccessKeys.from_secret(secret)
