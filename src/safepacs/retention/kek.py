"""Rotate the key-encryption key, so that copies of the index taken before a destruction
(a file copy of the data dir, a database dump) no longer open the destroyed keys.

Deleting a wrapped data key from the live index is not enough: an older copy of the index
still holds it, wrapped under the KEK that is still in use.  Rotation re-wraps every key that
remains (study data keys and site keys, the service's access, render and audit-signing
secrets among them) under a new KEK in one transaction, then replaces
the key file; the old KEK, and with it every wrapped copy of a destroyed key, is gone.

Only a KEK held in a file can be rotated here (``env:`` KEKs are rotated by whoever sets
the variable), and only while this process is the archive's only user (its lock taken
exclusively): another process would go on wrapping new study keys under the old KEK.
Crash safety: the new key is written to ``KEK.next`` first; :func:`finish_rotation` (run
before opening) settles a rotation interrupted between the commit and the rename.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select, update

from safepacs.index.models import DataKey, SiteKey
from safepacs.store import crypto
from safepacs.store.blobs import fsync_dir

_NEXT = ".next"


@dataclass(frozen=True)
class Rotation:
    rotated: bool
    reason: str  # why not, when not
    old_id: str = ""
    new_id: str = ""
    keys_rewrapped: int = 0


def _kek_path(spec: str, data_dir: Path) -> Path | None:
    kind, _, where = spec.partition(":")
    if kind != "file" or not where:
        return None
    return Path(where) if Path(where).is_absolute() else Path(data_dir) / where


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _rewrap(conn, old: crypto.KekProvider, new: crypto.LocalKek) -> int:  # type: ignore[no-untyped-def]
    count = 0
    for uid, wrapped in conn.execute(select(DataKey.study_uid, DataKey.wrapped)).all():
        ctx = b"study:" + uid.encode()
        conn.execute(update(DataKey).where(DataKey.study_uid == uid).values(
            wrapped=new.wrap(old.unwrap(wrapped, ctx), ctx), kek_id=new.key_id))
        count += 1
    for name, wrapped in conn.execute(select(SiteKey.name, SiteKey.wrapped)).all():
        ctx = b"site:" + name.encode()
        conn.execute(update(SiteKey).where(SiteKey.name == name).values(
            wrapped=new.wrap(old.unwrap(wrapped, ctx), ctx), kek_id=new.key_id))
        count += 1
    return count


def rotate(archive: object) -> Rotation:
    """Rotate ``archive``'s KEK in place (see the module docstring for when it cannot)."""
    a = archive  # an open safepacs.archive.Archive; its internals are used on purpose
    path = _kek_path(a.settings.kek, a.settings.data_dir)  # type: ignore[attr-defined]
    if path is None:
        return Rotation(False, "the KEK comes from the environment: rotate it there")
    fd = a._lock_fd  # type: ignore[attr-defined]
    if fd is None:
        return Rotation(False, "the archive is closed")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return Rotation(False, "other processes have the archive open; rotation deferred to the next run")
    try:
        with a._write_lock, a._key_lock:  # type: ignore[attr-defined]
            old = a._kek  # type: ignore[attr-defined]
            secret = crypto.generate_key()
            new = crypto.LocalKek(secret)
            nxt = path.with_name(path.name + _NEXT)
            _write_private(nxt, crypto.encode_kek(secret))
            try:
                with a._writer.begin() as conn:  # type: ignore[attr-defined]
                    count = _rewrap(conn, old, new)
            except BaseException:
                nxt.unlink(missing_ok=True)  # nothing was re-wrapped: keep the old KEK
                raise
            os.replace(nxt, path)
            fsync_dir(path.parent)
            a._kek = new  # type: ignore[attr-defined]
            for uid, (key, _wrapped) in list(a._pending_keys.items()):  # type: ignore[attr-defined]
                a._pending_keys[uid] = (key, new.wrap(key, b"study:" + uid.encode()))  # type: ignore[attr-defined]
            del secret
        return Rotation(True, "", old.key_id, new.key_id, count)
    finally:
        fcntl.flock(fd, fcntl.LOCK_SH)


def finish_rotation(data_dir: Path, kek_spec: str, engine: Engine) -> str:
    """Settle an interrupted rotation: keep whichever key file the index was wrapped with.
    Returns "none", "completed" or "discarded"."""
    path = _kek_path(kek_spec, data_dir)
    if path is None:
        return "none"
    nxt = path.with_name(path.name + _NEXT)
    if not nxt.exists():
        return "none"
    with engine.connect() as conn:
        ids = set(conn.scalars(select(SiteKey.kek_id)))
    if ids == {crypto.read_kek_file(nxt).key_id}:
        os.replace(nxt, path)
        fsync_dir(path.parent)
        return "completed"
    nxt.unlink()
    return "discarded"
