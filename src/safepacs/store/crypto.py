"""Envelope encryption: a key-encryption key (KEK) wraps data keys; data keys seal blobs.

Key hierarchy::

    KEK (key file, mode 0600, or an environment variable; a KMS could stand in: KekProvider)
     ├─ wraps the site keys (de-identification secret, identity-index key), kept in the index
     └─ wraps one data key per study (AES-256), kept in the index
          └─ seals every blob of the study (object and identity delta), AES-256-GCM

Nonces: each blob is sealed under its own key, HKDF(data key, 128-bit random salt), with a
random 96-bit nonce.  A nonce is thus used once per key by construction (one message per
derived key), and even a salt collision (2^-64 after 2^32 blobs) would also need a nonce
collision to repeat a (key, nonce) pair.  No counter has to survive crashes or be shared
between processes.  Wrapping under the KEK uses random nonces too: a KEK wraps a few keys
per study, far below the 2^32 messages NIST SP 800-38D allows for random nonces.

The header (magic, salt, nonce) and a caller's context (which object, which kind of blob)
are authenticated: a blob moved to another name or object fails to open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from safepacs.errors import SafepacsError

KEY_BYTES = 32
BLOB_MAGIC = b"SPBLOB1\x00"
WRAP_MAGIC = b"SPWRAP1\x00"
_SALT, _NONCE, _TAG = 16, 12, 16
BLOB_OVERHEAD = len(BLOB_MAGIC) + _SALT + _NONCE + _TAG
_KEK_HEADER = "safepacs-kek-v1"
#: bytes-like (bytes, bytearray, memoryview, mmap); collections.abc.Buffer is 3.12+
Buffer = bytes | bytearray | memoryview


class CryptoError(SafepacsError):
    """A key is missing, malformed or wrong."""


class TamperedError(SafepacsError):
    """Ciphertext failed authentication: changed, truncated, or sealed for something else."""


class KekProvider(Protocol):
    """What the archive needs from a key-encryption key; a KMS client can implement it."""

    @property
    def key_id(self) -> str:
        """A non-secret identifier of the key (to say clearly which key an archive needs)."""
        ...

    def wrap(self, key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Raises :class:`CryptoError` when the KEK is not the one that wrapped ``wrapped``."""
        ...


class LocalKek:
    """A KEK held in this process (from a key file or the environment)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_BYTES:
            raise CryptoError(f"key-encryption key must be {KEY_BYTES} bytes, got {len(secret)}")
        self._aead = AESGCM(secret)
        self._id = hashlib.sha256(b"safepacs-kek-id\x00" + secret).hexdigest()[:16]

    @property
    def key_id(self) -> str:
        return self._id

    def wrap(self, key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return WRAP_MAGIC + nonce + self._aead.encrypt(nonce, key, WRAP_MAGIC + context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        if not wrapped.startswith(WRAP_MAGIC) or len(wrapped) < len(WRAP_MAGIC) + _NONCE + _TAG:
            raise CryptoError("wrapped key is malformed")
        nonce = wrapped[len(WRAP_MAGIC) : len(WRAP_MAGIC) + _NONCE]
        try:
            return self._aead.decrypt(nonce, wrapped[len(WRAP_MAGIC) + _NONCE :], WRAP_MAGIC + context)
        except InvalidTag:
            raise CryptoError(
                "the key-encryption key does not open this archive's keys (wrong KEK?)"
            ) from None


def generate_key() -> bytes:
    return os.urandom(KEY_BYTES)


# --- where the KEK comes from ----------------------------------------------------------
def write_kek_file(path: Path) -> LocalKek:
    """Create a new KEK file with mode 0600; refuses to overwrite an existing one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(f"{_KEK_HEADER}:{base64.b64encode(secret).decode()}\n")
        fh.flush()
        os.fsync(fh.fileno())
    dir_fd = os.open(path.parent, os.O_RDONLY)  # the new name itself must survive a crash
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return LocalKek(secret)


def read_kek_file(path: Path) -> LocalKek:
    """Load a KEK file; refuses one that group or others may read (fail closed)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise CryptoError(f"{path}: key-encryption key file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CryptoError(f"{path}: cannot read key-encryption key ({exc.__class__.__name__})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CryptoError(f"{path}: key-encryption key file must have mode 0600 (chmod 600 it)")
    return LocalKek(_decode(text, str(path)))


def kek_from_env(var: str) -> LocalKek:
    """A KEK given as ``safepacs-kek-v1:BASE64`` or bare base64 in an environment variable."""
    text = os.environ.get(var)
    if not text:
        raise CryptoError(f"environment variable {var} (key-encryption key) is not set")
    return LocalKek(_decode(text.strip(), f"${var}"))


def _decode(text: str, where: str) -> bytes:
    body = text.split(":", 1)[1] if text.startswith(_KEK_HEADER + ":") else text
    try:
        secret = base64.b64decode(body, validate=True)
    except ValueError:
        raise CryptoError(f"{where}: key-encryption key is not valid base64") from None
    if len(secret) != KEY_BYTES:
        raise CryptoError(f"{where}: key-encryption key must be {KEY_BYTES} bytes")
    return secret


def encode_kek(secret: bytes) -> str:
    """The text form of a KEK, for an environment variable."""
    return f"{_KEK_HEADER}:{base64.b64encode(secret).decode()}"


def load_kek(spec: str, data_dir: Path, *, create: bool = False) -> LocalKek:
    """``file:PATH`` (relative to ``data_dir`` unless absolute) or ``env:VAR``."""
    kind, _, where = spec.partition(":")
    if kind == "env" and where:
        return kek_from_env(where)
    if kind == "file" and where:
        path = Path(where) if Path(where).is_absolute() else Path(data_dir) / where
        if create and not path.exists():
            return write_kek_file(path)
        return read_kek_file(path)
    raise CryptoError("kek must be 'file:PATH' or 'env:VARIABLE'")


# --- sealing blobs under a data key --------------------------------------------------
def _blob_key_bytes(data_key: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=b"safepacs-blob").derive(
        data_key
    )


def _blob_key(data_key: bytes, salt: bytes) -> AESGCM:
    return AESGCM(_blob_key_bytes(data_key, salt))


def seal(data_key: bytes, plain: bytes | bytearray | memoryview, context: bytes) -> bytes:
    """AES-256-GCM under a per-blob key; ``context`` is authenticated, not stored."""
    salt, nonce = os.urandom(_SALT), os.urandom(_NONCE)
    header = BLOB_MAGIC + salt + nonce
    return header + _blob_key(data_key, salt).encrypt(nonce, plain, header + context)


def sealed_size(plain_size: int) -> int:
    return BLOB_OVERHEAD + plain_size


def seal_parts(
    data_key: bytes, parts: Sequence[Buffer], context: bytes, buffer: bytearray
) -> memoryview:
    """Like :func:`seal` for a message given in parts, written into ``buffer`` (reused by
    the caller: fresh 8 MB allocations cost more than the encryption itself).  ``buffer``
    must hold ``sealed_size(total) + 15`` bytes.  Returns the sealed blob as a view."""
    salt, nonce = os.urandom(_SALT), os.urandom(_NONCE)
    header = BLOB_MAGIC + salt + nonce
    total = sum(memoryview(p).nbytes for p in parts)
    if len(buffer) < sealed_size(total) + 15:
        raise ValueError("buffer too small")
    enc = Cipher(algorithms.AES(_blob_key_bytes(data_key, salt)), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(header + context)
    view = memoryview(buffer)
    view[: len(header)] = header
    pos = len(header)
    for part in parts:
        pos += enc.update_into(part, view[pos:])
    enc.finalize()
    view[pos : pos + _TAG] = enc.tag
    return view[: pos + _TAG]


def unseal(data_key: bytes, blob: Buffer, context: bytes) -> bytes:
    """Decrypt and authenticate; raises :class:`TamperedError` on any mismatch.

    ``blob`` may be any bytes-like object (a memory map of the stored file avoids a copy).
    """
    head = len(BLOB_MAGIC) + _SALT + _NONCE
    if len(blob) < head + _TAG or bytes(blob[: len(BLOB_MAGIC)]) != BLOB_MAGIC:
        raise TamperedError("stored blob is malformed or truncated")
    blob = memoryview(blob)
    salt = bytes(blob[len(BLOB_MAGIC) : len(BLOB_MAGIC) + _SALT])
    nonce = bytes(blob[len(BLOB_MAGIC) + _SALT : head])
    try:
        return _blob_key(data_key, salt).decrypt(nonce, blob[head:], bytes(blob[:head]) + context)
    except InvalidTag:
        raise TamperedError("stored blob failed its integrity check (AES-GCM tag)") from None


def plain_size(blob: Buffer) -> int:
    """Bytes :func:`unseal` would return for ``blob`` (0 for a blob too short to be one)."""
    return max(0, len(blob) - BLOB_OVERHEAD)


def unseal_into(data_key: bytes, blob: Buffer, context: bytes, out: memoryview) -> None:
    """:func:`unseal` writing the plaintext into ``out[:plain_size(blob)]``, so a caller can
    frame it (a multipart header before, a delimiter after) without copying it again.

    ``out`` must hold ``plain_size(blob) + 15`` bytes (the cipher's block slack).  On
    :class:`TamperedError` ``out`` holds unauthenticated bytes: the caller must drop it.
    """
    head = len(BLOB_MAGIC) + _SALT + _NONCE
    if len(blob) < head + _TAG or bytes(blob[: len(BLOB_MAGIC)]) != BLOB_MAGIC:
        raise TamperedError("stored blob is malformed or truncated")
    if len(out) < plain_size(blob) + 15:
        raise ValueError("output buffer too small")
    blob = memoryview(blob)
    salt = bytes(blob[len(BLOB_MAGIC) : len(BLOB_MAGIC) + _SALT])
    nonce = bytes(blob[len(BLOB_MAGIC) + _SALT : head])
    tag = bytes(blob[len(blob) - _TAG :])
    dec = Cipher(algorithms.AES(_blob_key_bytes(data_key, salt)), modes.GCM(nonce, tag)).decryptor()
    dec.authenticate_additional_data(bytes(blob[:head]) + context)
    try:
        dec.update_into(blob[head : len(blob) - _TAG], out)
        dec.finalize()
    except InvalidTag:
        raise TamperedError("stored blob failed its integrity check (AES-GCM tag)") from None


def keyed_hash(key: bytes, purpose: str, value: str) -> str:
    """HMAC-SHA-256 as lower-case hex: finds a value without storing it."""
    msg = purpose.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def derive(key: bytes, purpose: str) -> bytes:
    """An independent sub-key for one purpose."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode()).derive(key)
