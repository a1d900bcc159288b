"""The access core's secret: 32 random bytes from which the JWT signing key and the TOTP
sealing key are derived (HKDF, distinct labels), so neither key is ever used for two jobs.

An archive keeps the secret wrapped by its KEK (:mod:`safepacs.store.service_keys`); a bare
folder (a component used on its own, or a data dir from before) holds it as the file
``access.key`` (32 bytes, mode 0600), which an archive imports and shreds on open."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from safepacs.access.errors import AccessError

if TYPE_CHECKING:
    from safepacs.store.service_keys import SecretSource

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


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def read_key_file(path: Path) -> bytes:
    """The secret in an ``access.key`` file; refused when others may read it or malformed."""
    path = Path(path)
    if path.stat().st_mode & 0o077:
        raise AccessError("the access key file must be readable by its owner only (chmod 600)")
    secret = path.read_bytes()
    if len(secret) != 32:
        raise AccessError("the access key file is malformed (expected 32 bytes)")
    return secret


def load_keys(keys: Path | SecretSource, *, create: bool = True) -> AccessKeys:
    """The access keys from an archive's wrapped secrets, or from ``keys/access.key`` in a
    bare folder (created, mode 0600, when absent and ``create``)."""
    if not isinstance(keys, (str, os.PathLike)):
        from safepacs.store.service_keys import ACCESS

        secret = keys.secret(ACCESS, new_secret if create else None)
        if len(secret) != 32:
            raise AccessError("the access key is malformed (expected 32 bytes)")
        return AccessKeys.from_secret(secret)
    keys_dir = Path(keys)
    path = keys_dir / KEY_FILE
    if not path.exists():
        if not create:
            raise AccessError("the access key file is missing")
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, new_secret())
            os.fsync(fd)
        finally:
            os.close(fd)
    return AccessKeys.from_secret(read_key_file(path))
