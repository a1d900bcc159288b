"""The service's own secrets (access, render, audit and certificate signing), wrapped by the KEK.

They sit beside the de-identification and identity-index keys as ``site_keys`` rows, so a
copy of the data dir without the KEK opens none of them, and KEK rotation re-wraps them with
the rest.  Each secret is raw bytes; its owner derives or parses what it needs from them
(:mod:`safepacs.access.keyfile`, :mod:`safepacs.render.keys`, :mod:`safepacs.audit.heads`).

Data dirs made before this held them as plaintext files in ``keys/``.  :func:`open_secrets`
imports each such file (same bytes, so tokens, seals, watermarks and signatures made with it
stay valid), reads the row back, and only then shreds the file: renamed aside, overwritten,
unlinked, the folder synced.  A crash anywhere leaves either the file (imported again, or
found equal to the row) or the renamed remnant (shredded again); never two different keys.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from safepacs.index.models import SiteKey
from safepacs.store import crypto
from safepacs.store.blobs import fsync_dir

if TYPE_CHECKING:
    from safepacs.config import Settings

ACCESS = "access"
RENDER = "render"
AUDIT_SIGNING = "audit-signing"
RETENTION_SIGNING = "retention-signing"
#: suffix of a legacy key file renamed aside for shredding (its secret is already wrapped)
SHRED_SUFFIX = ".shred"


class SecretSource(Protocol):
    """Where a component gets its secret: ``make`` creates it when absent (None: must exist).
    ``keys_dir`` is where public halves (the audit public key) are published."""

    keys_dir: Path

    def secret(self, name: str, make: Callable[[], bytes] | None = None) -> bytes: ...


class WrappedSecrets:
    """Secrets kept as ``site_keys`` rows wrapped by the KEK (``kek`` is called at each use,
    so a rotated KEK is picked up)."""

    def __init__(self, engine: Engine, kek: Callable[[], crypto.KekProvider], keys_dir: Path) -> None:
        self._engine = engine
        self._kek = kek
        self.keys_dir = Path(keys_dir)

    def secret(self, name: str, make: Callable[[], bytes] | None = None) -> bytes:
        """The secret ``name``, unwrapped; created and stored first when absent and ``make``
        is given (when two processes race, both get the winner's)."""
        found = self._read(name)
        if found is not None:
            return found
        if make is None:
            raise crypto.CryptoError(f"the archive holds no {name} key")
        kek = self._kek()
        value = make()
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(SiteKey), {"name": name, "wrapped": kek.wrap(value, _context(name)),
                                               "kek_id": kek.key_id})
        except IntegrityError:
            pass  # another process stored it first: use that one
        found = self._read(name)
        if found is None:
            raise crypto.CryptoError(f"the {name} key could not be stored")
        return found

    def _read(self, name: str) -> bytes | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(SiteKey.wrapped, SiteKey.kek_id).where(SiteKey.name == name)).first()
        if row is None:
            return None
        kek = self._kek()
        if row.kek_id != kek.key_id:
            raise crypto.CryptoError(
                f"wrong key-encryption key: the {name} key needs KEK {row.kek_id}, the one given is {kek.key_id}")
        return kek.unwrap(row.wrapped, _context(name))


def _context(name: str) -> bytes:
    return b"site:" + name.encode()  # as for every site key (see retention.kek)


@dataclass(frozen=True)
class Legacy:
    """A secret that older data dirs kept as the plaintext file ``filename`` in ``keys/``;
    ``read`` parses that file into the secret's bytes (raising on anything malformed)."""

    name: str
    filename: str
    read: Callable[[Path], bytes]
    make: Callable[[], bytes]


def legacy_secrets() -> tuple[Legacy, ...]:
    """The service secrets, each with its old file format and its generator."""
    from safepacs.access import keyfile
    from safepacs.audit import heads
    from safepacs.render import keys as render_keys
    from safepacs.retention import certificate

    return (
        Legacy(ACCESS, keyfile.KEY_FILE, keyfile.read_key_file, keyfile.new_secret),
        Legacy(RENDER, render_keys.KEY_FILE, render_keys.read_key_file, render_keys.new_secret),
        Legacy(AUDIT_SIGNING, heads.KEY_FILE, heads.read_key_file, heads.new_secret),
        Legacy(RETENTION_SIGNING, certificate.KEY_FILE, certificate.read_key_file, certificate.new_secret),
    )


def upgrade(source: WrappedSecrets, legacies: tuple[Legacy, ...] | None = None) -> list[str]:
    """Import every legacy key file into ``source`` and shred it; create any secret that has
    neither file nor row.  Idempotent; returns the names imported."""
    legacies = legacies if legacies is not None else legacy_secrets()
    paths = [source.keys_dir / leg.filename for leg in legacies]
    if not any(p.exists() or _aside(p).exists() for p in paths):  # the usual case: no lock
        for leg in legacies:
            source.secret(leg.name, leg.make)
        return []
    fd = os.open(source.keys_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one importer at a time, across processes
        return [leg.name for leg, path in zip(legacies, paths, strict=True) if _import(source, leg, path)]
    finally:
        os.close(fd)  # releases the lock


def _aside(path: Path) -> Path:
    return path.with_name(path.name + SHRED_SUFFIX)


def _import(source: WrappedSecrets, leg: Legacy, path: Path) -> bool:
    imported = False
    if path.exists():
        value = leg.read(path)  # a malformed file stops here, kept, with nothing changed
        stored = source.secret(leg.name, lambda: value)
        if stored != value:
            raise crypto.CryptoError(
                f"keys/{leg.filename} differs from the archive's wrapped {leg.name} key; nothing was changed "
                "(move the file away only if the wrapped key is the one in use)")
        if source.secret(leg.name) != value:  # read back once more before the file goes
            raise crypto.CryptoError(f"the {leg.name} key did not read back as imported; keys/{leg.filename} kept")
        os.replace(path, _aside(path))
        fsync_dir(path.parent)
        imported = True
    else:
        source.secret(leg.name, leg.make)
    if _aside(path).exists():  # renamed aside by this run or by one that crashed
        shred(_aside(path))
    return imported


def shred(path: Path) -> None:
    """Overwrite ``path`` with zeros (synced), unlink it, sync its folder."""
    size = path.stat().st_size
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, b"\0" * size)
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
    fsync_dir(path.parent)


def open_secrets(settings: Settings, engine: Engine, kek: crypto.KekProvider | None = None) -> WrappedSecrets:
    """The data dir's wrapped secrets, legacy key files imported (for commands that work on
    the data dir without opening the whole archive).  Without the archive's KEK this fails
    with a :class:`~safepacs.store.crypto.CryptoError` that says which KEK is needed."""
    provider = kek or crypto.load_kek(settings.kek, settings.data_dir)
    with engine.connect() as conn:
        ids = set(conn.scalars(select(SiteKey.kek_id)))
    if not ids:
        raise crypto.CryptoError("the index database holds no archive keys (wrong --database-url?)")
    if ids != {provider.key_id}:
        raise crypto.CryptoError(f"wrong key-encryption key: this archive needs KEK {min(ids)}, "
                                 f"the one given is {provider.key_id}; nothing was changed")
    source = WrappedSecrets(engine, lambda: provider, Path(settings.data_dir) / "keys")
    upgrade(source)
    return source
