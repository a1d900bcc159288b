"""Ed25519 signing keys kept as files in the data dir's ``keys/`` folder (the audit trail's
tree heads, destruction certificates): created once, mode 0600, whole or not at all, with
the public half beside them for whoever verifies."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safepacs.errors import SafepacsError

if TYPE_CHECKING:
    from safepacs.store.service_keys import SecretSource


class SigningKeyError(SafepacsError):
    """A signing key file is unreadable, of the wrong kind, or open to others."""


def load_or_create(path: Path, public_path: Path | None = None, *, create: bool = True) -> Ed25519PrivateKey:
    """The key in ``path``, created first if absent (and ``create``); ``public_path`` gets
    its public PEM.

    Creation writes aside and links into place, so two processes starting at once agree on
    one key and none reads half a file.  A key file readable by others is refused.
    """
    path = Path(path)
    if not path.exists() and not create:
        raise SigningKeyError(f"{path.name}: no such signing key file")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _create(path)
    if path.stat().st_mode & 0o077:
        raise SigningKeyError(f"{path}: signing key must have mode 0600")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"{path}: unreadable signing key ({exc.__class__.__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an Ed25519 key")
    if public_path is not None:
        publish(key, public_path)
    return key


def publish(key: Ed25519PrivateKey, public_path: Path) -> None:
    """Write the public PEM of ``key`` to ``public_path`` (0644, atomically) unless there."""
    pem = public_pem(key)
    public_path = Path(public_path)
    if public_path.exists() and public_path.read_bytes() == pem:
        return
    public_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = public_path.with_name(f"{public_path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    tmp.write_bytes(pem)
    os.chmod(tmp, 0o644)
    os.replace(tmp, public_path)


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _create(path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won: use its key
    finally:
        tmp.unlink(missing_ok=True)


def load_signing_key(keys: Path | SecretSource, name: str, key_file: str, public_file: str,
                     make: Callable[[], bytes]) -> Ed25519PrivateKey:
    """The service signing key ``name``: an archive's wrapped seed (created with ``make`` when
    absent), or ``key_file`` in a bare keys folder (created when absent); either way its
    public half is published as ``public_file`` beside the keys."""
    if isinstance(keys, (str, os.PathLike)):
        return load_or_create(Path(keys) / key_file, Path(keys) / public_file)
    try:
        key = Ed25519PrivateKey.from_private_bytes(keys.secret(name, make))
    except ValueError:
        raise SigningKeyError(f"the {name} key is malformed") from None
    publish(key, keys.keys_dir / public_file)
    return key
