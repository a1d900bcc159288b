"""Named key custodians: an X25519 key pair each, the private key sealed under the
custodian's passphrase (scrypt + AES-256-GCM), and shares encrypted to their public keys.

Share envelope (age-style): ephemeral X25519 public key (32) | nonce (12) | AES-GCM
ciphertext, under HKDF-SHA256(ECDH secret, salt = ephemeral + recipient public keys,
info = "safepacs-share" + the caller's context).  The context (which study) is bound in, so
a share moved to another study does not open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from safepacs.errors import SafepacsError

_PRIV_MAGIC = b"SPCUST1\x00"
_SHARE_MAGIC = b"SPSHARE1"
_SALT, _NONCE = 16, 12
#: scrypt cost: about 0.1 s and 32 MiB per passphrase check (RFC 7914 interactive range)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSPHRASE = 12


class CustodianError(SafepacsError):
    """Wrong passphrase, malformed key material, or a share that does not open."""


@dataclass(frozen=True)
class CustodianKeys:
    public_key: bytes  # 32 bytes, raw X25519
    protected_private: bytes  # magic | salt | nonce | AES-GCM(private key)


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _passphrase_key(passphrase: str, salt: bytes) -> AESGCM:
    kdf = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return AESGCM(kdf.derive(passphrase.encode("utf-8")))


def new_keys(passphrase: str) -> CustodianKeys:
    """A fresh key pair, the private half sealed under ``passphrase``."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise CustodianError(f"a custodian passphrase needs at least {MIN_PASSPHRASE} characters")
    private = X25519PrivateKey.generate()
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    salt, nonce = os.urandom(_SALT), os.urandom(_NONCE)
    public = _raw_public(private.public_key())
    sealed = _passphrase_key(passphrase, salt).encrypt(nonce, raw, _PRIV_MAGIC + public)
    return CustodianKeys(public, _PRIV_MAGIC + salt + nonce + sealed)


def unlock(keys: CustodianKeys, passphrase: str) -> X25519PrivateKey:
    """The private key, or :class:`CustodianError` for a wrong passphrase."""
    blob = keys.protected_private
    if not blob.startswith(_PRIV_MAGIC) or len(blob) < len(_PRIV_MAGIC) + _SALT + _NONCE + 48:
        raise CustodianError("custodian key material is malformed")
    pos = len(_PRIV_MAGIC)
    salt, nonce = blob[pos : pos + _SALT], blob[pos + _SALT : pos + _SALT + _NONCE]
    try:
        raw = _passphrase_key(passphrase, salt).decrypt(nonce, blob[pos + _SALT + _NONCE :], _PRIV_MAGIC + keys.public_key)
    except InvalidTag:
        raise CustodianError("wrong custodian passphrase") from None
    private = X25519PrivateKey.from_private_bytes(raw)
    if _raw_public(private.public_key()) != keys.public_key:
        raise CustodianError("custodian key pair does not match")
    return private


def _share_key(shared: bytes, eph: bytes, recipient: bytes, context: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=eph + recipient, info=b"safepacs-share\x00" + context)
    return AESGCM(hkdf.derive(shared))


def encrypt_share(public_key: bytes, share: bytes, context: bytes) -> bytes:
    """``share`` sealed so only the holder of ``public_key``'s private key opens it."""
    try:
        recipient = X25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        raise CustodianError("custodian public key is malformed") from None
    eph = X25519PrivateKey.generate()
    eph_pub = _raw_public(eph.public_key())
    nonce = os.urandom(_NONCE)
    aead = _share_key(eph.exchange(recipient), eph_pub, public_key, context)
    return _SHARE_MAGIC + eph_pub + nonce + aead.encrypt(nonce, share, _SHARE_MAGIC + context)


def decrypt_share(private: X25519PrivateKey, envelope: bytes, context: bytes) -> bytes:
    head = len(_SHARE_MAGIC)
    if not envelope.startswith(_SHARE_MAGIC) or len(envelope) < head + 32 + _NONCE + 16:
        raise CustodianError("share envelope is malformed")
    eph_pub = envelope[head : head + 32]
    nonce = envelope[head + 32 : head + 32 + _NONCE]
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        aead = _share_key(shared, eph_pub, _raw_public(private.public_key()), context)
        return aead.decrypt(nonce, envelope[head + 32 + _NONCE :], _SHARE_MAGIC + context)
    except (InvalidTag, ValueError):
        raise CustodianError("the share does not open with this custodian's key") from None
