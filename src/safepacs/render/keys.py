"""Rendering's secret: one key file (``keys_dir/render.key``, mode 0600) from which the
watermark key, the cache key and every project key are derived (HKDF, distinct labels),
so no key serves two jobs and the watermark key never leaves the server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safepacs.deid.keys import Keys
from safepacs.render.render import project_key

KEY_FILE = "render.key"


@dataclass(frozen=True)
class RenderKeys:
    secret: Keys

    @classmethod
    def load(cls, keys_dir: Path, *, create: bool = True) -> RenderKeys:
        """Read ``keys_dir/render.key``, creating it (0600) when absent and ``create``."""
        Path(keys_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        return cls(Keys.from_file(Path(keys_dir) / KEY_FILE, create=create))

    @property
    def watermark(self) -> bytes:
        return self.secret.derive("safepacs render watermark v1")

    @property
    def cache(self) -> bytes:
        return self.secret.derive("safepacs render cache v1")

    def project(self, code: str) -> bytes:
        """The key that re-keys identifiers for project ``code``."""
        return project_key(self.secret.derive("safepacs render projects v1"), code)
