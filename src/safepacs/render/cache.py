"""A bounded cache of rendered objects that holds them only encrypted.

Why: restoring or re-keying a large object costs tens of milliseconds, and the same
reader often asks again; but a rendered identified copy is exactly what must never lie in
clear anywhere.  Entries are sealed with AES-256-GCM under the cache key, bound to their
(instance, level, project) key so one cannot be served for another, and kept in memory or
in a directory under names that are keyed hashes (no UID on disk).  A revoked grant drops
every entry of its project or account.  The directory is emptied on open: after a restart
nothing rendered under an older set of grants survives.  Watermarks are per issued copy, so
callers cache the render before the mark and mark each copy as it leaves.
"""

from __future__ import annotations

import hashlib
import hmac
import mmap
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DEFAULT_MAX_BYTES = 256 << 20


@dataclass
class _Entry:
    name: str
    size: int
    project: str | None
    accounts: set[int]
    sealed: bytes | None  # None: the sealed bytes are in the directory


class RenderCache:
    def __init__(self, key: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, directory: Path | None = None) -> None:
        if len(key) != 32:
            raise ValueError("cache key must be 32 bytes")
        self._aead = AESGCM(key)
        self._name_key = hmac.new(key, b"safepacs cache names", hashlib.sha256).digest()
        self._max = max_bytes
        self._dir = Path(directory) if directory is not None else None
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            for stale in self._dir.glob("*.rc"):
                stale.unlink(missing_ok=True)

    @staticmethod
    def _aad(key: tuple) -> bytes:
        return b"safepacs-render-cache-v1\x00" + "\x00".join(str(k) for k in key).encode("utf-8")

    def _name(self, key: tuple) -> str:
        return hmac.new(self._name_key, self._aad(key), hashlib.sha256).hexdigest()[:40]

    def put(self, instance: str, level: str, project: str | None, data: bytes, *, account: int | None = None) -> None:
        """Cache ``data`` for (instance, level, project); ``account``: whose request made it."""
        key = (instance, level, project or "")
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, data, self._aad(key))
        if len(sealed) > self._max:
            return
        with self._lock:
            self._drop(key)
            entry = _Entry(self._name(key), len(sealed), project, set() if account is None else {account}, sealed)
            if self._dir is not None:
                path = self._dir / (entry.name + ".rc")
                tmp = path.with_suffix(".part")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(sealed)
                os.replace(tmp, path)
                entry.sealed = None
            self._entries[key] = entry
            self._size += entry.size
            while self._size > self._max and self._entries:
                self._drop(next(iter(self._entries)))

    def get(self, instance: str, level: str, project: str | None = None, *, account: int | None = None) -> bytes | None:
        key = (instance, level, project or "")
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            if account is not None:
                entry.accounts.add(account)
            sealed = entry.sealed
            if sealed is None and self._dir is not None:
                try:
                    sealed = _map(self._dir / (entry.name + ".rc"))
                except (OSError, ValueError):
                    self._drop(key)
                    return None
        try:
            # decrypted straight from the mapped file: reading it into a fresh bytes object
            # and slicing off the nonce each cost a page-faulted 4 MB copy, ten times the
            # decryption itself
            with memoryview(sealed) as view:  # type: ignore[arg-type]
                return self._aead.decrypt(view[:12], view[12:], self._aad(key))
        except InvalidTag:
            with self._lock:
                self._drop(key)
            return None
        finally:
            if isinstance(sealed, mmap.mmap):
                sealed.close()

    def invalidate(self, *, project: str | None = None, account: int | None = None,
                   instance: str | None = None) -> int:
        """Drop every entry of ``project``, read by ``account``, or of ``instance``; returns
        how many went.  With no argument, everything goes."""
        with self._lock:
            doomed = [k for k, e in self._entries.items()
                      if (project is None and account is None and instance is None)
                      or (project is not None and e.project == project)
                      or (account is not None and account in e.accounts)
                      or (instance is not None and k[0] == instance)]
            for key in doomed:
                self._drop(key)
            return len(doomed)

    def _drop(self, key: tuple) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._size -= entry.size
        if self._dir is not None:
            (self._dir / (entry.name + ".rc")).unlink(missing_ok=True)

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._entries)


def _map(path: Path) -> mmap.mmap:
    """A read-only map of a cache file (files are replaced whole, never changed in place, so
    the map stays valid even if the entry is dropped meanwhile)."""
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
