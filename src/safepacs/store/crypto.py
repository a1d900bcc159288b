"""Envelope encryption: a key-encryption key (KEK) wraps data keys; data keys seal blobs.

Key hierarchy::

    KEK (key file, mode 0600, or an environment variable; a KMS could stand in: KekProvider)
     ├─ wraps the site keys (de-identification secret, identity-index key), kept in the index
     └─ wraps one data key per study (AES-256), kept in the index
          └─ seals every blob of the study (object and identity delta), AES-256-GCM

Nonces: each blob is sealed under its own key, HKDF(data key, 128-bit random salt), in
segments of 1 MiB (STREAM): segment i's nonce is a random 56-bit prefix, i, and a flag
marking the last segment.  A nonce is thus used once per key by construction (one blob
per derived key, one index per segment), whatever the prefix.  No counter has to survive
crashes or be shared between processes.  Wrapping under the KEK uses random nonces: a KEK
wraps a few keys per study, far below the 2^32 messages NIST SP 800-38D allows for random
nonces.

The header (magic, salt, nonce prefix, segment size) and a caller's context (which object,
which kind of blob) are authenticated in every segment: a blob moved to another name or
object fails to open.  Segments let a reader send a large object's first megabyte, checked,
while the rest is still being opened; each segment is checked before any of it is used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from safepacs.errors import SafepacsError

KEY_BYTES = 32
#: sealed blobs: magic, salt, nonce prefix, segment size, then the segments (each its
#: ciphertext and tag).  _MAGIC_V1 blobs (before segments: magic, salt, nonce, one
#: ciphertext, tag) still open.
BLOB_MAGIC = b"SPBLOB2\x00"
_MAGIC_V1 = b"SPBLOB1\x00"
WRAP_MAGIC = b"SPWRAP1\x00"
_SALT, _NONCE, _TAG, _PREFIX = 16, 12, 16, 7
_HEAD = len(BLOB_MAGIC) + _SALT + _PREFIX + 4
_HEAD_V1 = len(_MAGIC_V1) + _SALT + _NONCE
#: plaintext bytes per segment: a reader can send a radiograph's first megabyte, checked,
#: while the rest is still being opened (8 MB take ~3 ms to open here)
SEGMENT = 1 << 20
_MAX_SEGMENT = 1 << 30
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


class _Layout:
    """Where a sealed blob's parts are, read from its header (either format)."""

    __slots__ = ("head", "salt", "prefix", "segment", "count", "plain")

    def __init__(self, blob: Buffer) -> None:
        magic = bytes(blob[: len(BLOB_MAGIC)])
        if magic == BLOB_MAGIC and len(blob) >= _HEAD + _TAG:
            self.head = _HEAD
            self.prefix = bytes(blob[len(BLOB_MAGIC) + _SALT : len(BLOB_MAGIC) + _SALT + _PREFIX])
            self.segment = int.from_bytes(blob[_HEAD - 4 : _HEAD], "big")
            if not 0 < self.segment <= _MAX_SEGMENT:
                raise TamperedError("stored blob is malformed or truncated")
            body = len(blob) - _HEAD
            self.count = -(-body // (self.segment + _TAG))
            self.plain = body - _TAG * self.count
            if self.plain < (self.count - 1) * self.segment:  # a last segment shorter than a tag
                raise TamperedError("stored blob is malformed or truncated")
        elif magic == _MAGIC_V1 and len(blob) >= _HEAD_V1 + _TAG:
            self.head = _HEAD_V1
            self.prefix = bytes(blob[len(_MAGIC_V1) + _SALT : _HEAD_V1])  # the whole nonce
            self.segment = self.plain = len(blob) - _HEAD_V1 - _TAG
            self.count = 1
        else:
            raise TamperedError("stored blob is malformed or truncated")
        self.salt = bytes(blob[len(BLOB_MAGIC) : len(BLOB_MAGIC) + _SALT])

    def nonce(self, index: int) -> bytes:
        if self.head == _HEAD_V1:
            return self.prefix
        return _segment_nonce(self.prefix, index, index == self.count - 1)

    def span(self, index: int) -> tuple[int, int]:
        """Start and end of segment ``index``'s ciphertext and tag in the blob."""
        start = self.head + index * (self.segment + _TAG)
        size = self.segment if index < self.count - 1 else self.plain - index * self.segment
        return start, start + size + _TAG


def _segment_nonce(prefix: bytes, index: int, last: bool) -> bytes:
    # STREAM (Hoang et al., 2015): a segment's place and whether it ends the blob are in its
    # nonce, so segments cannot be dropped, repeated, reordered or cut short unnoticed
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _segment_count(plain_size: int) -> int:
    return max(1, -(-plain_size // SEGMENT))


def sealed_size(plain_size: int) -> int:
    return _HEAD + plain_size + _TAG * _segment_count(plain_size)


def _sealing(data_key: bytes, context: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(header, blob key, nonce prefix, associated data) for a new blob."""
    salt, prefix = os.urandom(_SALT), os.urandom(_PREFIX)
    header = BLOB_MAGIC + salt + prefix + SEGMENT.to_bytes(4, "big")
    return header, _blob_key_bytes(data_key, salt), prefix, header + context


def seal(data_key: bytes, plain: bytes | bytearray | memoryview, context: bytes) -> bytes | bytearray:
    """AES-256-GCM under a per-blob key, in segments; ``context`` is authenticated, not stored."""
    size = memoryview(plain).nbytes
    if size <= SEGMENT:
        header, key, prefix, aad = _sealing(data_key, context)
        return header + AESGCM(key).encrypt(_segment_nonce(prefix, 0, True), plain, aad)
    # several segments: encrypted in place into one buffer (a fresh buffer per segment, then
    # joined, took five times as long where the kernel must fault every new page in)
    out = bytearray(sealed_size(size) + 15)
    del out[len(seal_parts(data_key, [plain], context, out)) :]
    return out


def seal_parts(
    data_key: bytes, parts: Sequence[Buffer], context: bytes, buffer: bytearray
) -> memoryview:
    """Like :func:`seal` for a message given in parts, written into ``buffer`` (reused by
    the caller: fresh 8 MB allocations cost more than the encryption itself).  ``buffer``
    must hold ``sealed_size(total) + 15`` bytes.  Returns the sealed blob as a view."""
    views = [memoryview(p).cast("B") for p in parts]
    total = sum(v.nbytes for v in views)
    if len(buffer) < sealed_size(total) + 15:
        raise ValueError("buffer too small")
    header, key, prefix, aad = _sealing(data_key, context)
    out = memoryview(buffer)
    out[: len(header)] = header
    pos, count = len(header), _segment_count(total)
    for i in range(count):
        enc = Cipher(algorithms.AES(key), modes.GCM(_segment_nonce(prefix, i, i == count - 1))).encryptor()
        enc.authenticate_additional_data(aad)
        want = min(SEGMENT, total - i * SEGMENT)
        while want:  # this segment's bytes, across as many parts as they span
            take = views[0][:want]
            pos += enc.update_into(take, out[pos:])
            want -= take.nbytes
            views[0] = views[0][take.nbytes :]
            if not views[0] and len(views) > 1:
                views.pop(0)
        enc.finalize()
        out[pos : pos + _TAG] = enc.tag
        pos += _TAG
    return out[:pos]


def plain_size(blob: Buffer) -> int:
    """Bytes :func:`unseal` would return for ``blob`` (0 for a blob too short to be one)."""
    try:
        return _Layout(blob).plain
    except TamperedError:
        return 0


def unseal_segments(data_key: bytes, blob: Buffer, context: bytes) -> Iterator[bytes]:
    """The plaintext segment by segment (1 MiB each; a blob of the first format is one),
    each authenticated before it is yielded: a caller can send the first while the rest
    are still being opened.  Raises :class:`TamperedError` when a segment fails, after the
    segments before it were yielded; a caller that must not act on part of a blob uses
    :func:`unseal`."""
    return _segments(_Layout(blob), data_key, blob, context)


def _segments(layout: _Layout, data_key: bytes, blob: Buffer, context: bytes) -> Iterator[bytes]:
    aead = AESGCM(_blob_key_bytes(data_key, layout.salt))
    aad, view = bytes(blob[: layout.head]) + context, memoryview(blob)
    for i in range(layout.count):
        start, end = layout.span(i)
        try:
            piece = aead.decrypt(layout.nonce(i), view[start:end], aad)
        except InvalidTag:
            raise TamperedError("stored blob failed its integrity check (AES-GCM tag)") from None
        yield piece


def unseal(data_key: bytes, blob: Buffer, context: bytes) -> bytes | bytearray:
    """Decrypt and authenticate; raises :class:`TamperedError` on any mismatch.

    ``blob`` may be any bytes-like object (a memory map of the stored file avoids a copy).
    """
    layout = _Layout(blob)
    if layout.count == 1:
        return next(_segments(layout, data_key, blob, context))
    out = bytearray(layout.plain + 15)  # in place, as seal() (fresh pieces, joined, were slow)
    _open_into(layout, data_key, blob, context, memoryview(out))
    del out[layout.plain :]
    return out


def unseal_into(data_key: bytes, blob: Buffer, context: bytes, out: memoryview) -> None:
    """:func:`unseal` writing the plaintext into ``out[:plain_size(blob)]``, so a caller can
    frame it (a multipart header before, a delimiter after) without copying it again.

    ``out`` must hold ``plain_size(blob) + 15`` bytes (the cipher's block slack).  On
    :class:`TamperedError` ``out`` holds unauthenticated bytes: the caller must drop it.
    """
    layout = _Layout(blob)
    if len(out) < layout.plain + 15:
        raise ValueError("output buffer too small")
    _open_into(layout, data_key, blob, context, out)


def _open_into(layout: _Layout, data_key: bytes, blob: Buffer, context: bytes, out: memoryview) -> None:
    key = _blob_key_bytes(data_key, layout.salt)
    aad, view, pos = bytes(blob[: layout.head]) + context, memoryview(blob), 0
    for i in range(layout.count):
        start, end = layout.span(i)
        dec = Cipher(algorithms.AES(key), modes.GCM(layout.nonce(i), bytes(view[end - _TAG : end]))).decryptor()
        dec.authenticate_additional_data(aad)
        try:
            pos += dec.update_into(view[start : end - _TAG], out[pos:])
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
