"""Rendering's secret: 32 bytes from which the watermark key, the cache key and every project
key are derived (HKDF, distinct labels), so no key serves two jobs and the watermark key
never leaves the server.

An archive keeps the secret wrapped by its KEK (:mod:`safepacs.store.service_keys`); a bare
folder (a component used on its own, or a data dir from before) holds it as the key file
``render.key`` (mode 0600), which an archive imports and shreds on open."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from safepacs.deid.keys import Keys
from safepacs.render.render import project_key

if TYPE_CHECKING:
    from safepacs.store.service_keys import SecretSource

KEY_FILE = "render.key"


def new_secret() -> bytes:
    return Keys.generate().secret


def read_key_file(path: Path) -> bytes:
    """The secret in a ``render.key`` file (``safepacs-key-v1:BASE64``)."""
    return Keys.from_file(Path(path), create=False).secret


@dataclass(frozen=True)
class RenderKeys:
    secret: Keys

    @classmethod
    def load(cls, keys: Path | SecretSource, *, create: bool = True) -> RenderKeys:
        """From an archive's wrapped secrets, or from ``keys/render.key`` in a bare folder
        (created, 0600, when absent and ``create``)."""
        if not isinstance(keys, (str, os.PathLike)):
            from safepacs.store.service_keys import RENDER

            return cls(Keys(keys.secret(RENDER, new_secret if create else None)))
        Path(keys).mkdir(parents=True, exist_ok=True, mode=0o700)
        return cls(Keys.from_file(Path(keys) / KEY_FILE, create=create))

    @property
    def watermark(self) -> bytes:
        return self.secret.derive("safepacs render watermark v1")

    @property
    def cache(self) -> bytes:
        return self.secret.derive("safepacs render cache v1")

    def project(self, code: str) -> bytes:
        """The key that re-keys identifiers for project ``code``."""
        return project_key(self.secret.derive("safepacs render projects v1"), code)
