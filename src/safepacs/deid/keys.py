"""Keyed pseudonyms: one secret drives every replacement that must stay consistent.

The same key maps the same original UID, patient ID or patient to the same pseudonym or
date offset on every file, run and machine; a different key gives unlinkable output.
HMAC-SHA-256 is one-way, so a pseudonym reveals nothing without the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from safepacs.errors import KeyError_

KEY_BYTES = 32
#: Modified dates move every date of a patient back by 1..MAX_SHIFT_DAYS days.
MAX_SHIFT_DAYS = 3652
_HEADER = "safepacs-key-v1"


@dataclass(frozen=True)
class Keys:
    """The project secret.  Derives sub-keys so that no two uses share key material."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise KeyError_(f"key must be {KEY_BYTES} bytes, got {len(self.secret)}")

    # --- construction -------------------------------------------------------------
    @classmethod
    def generate(cls) -> Keys:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_file(cls, path: Path, *, create: bool = True) -> Keys:
        """Load the key file, creating it with mode 0600 when absent and ``create`` is set."""
        path = Path(path)
        if not path.exists():
            if not create:
                raise KeyError_(f"{path}: key file not found")
            keys = cls.generate()
            keys.save(path)
            return keys
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyError_(f"{path}: cannot read key file ({exc.__class__.__name__})") from None
        header, _, body = text.partition(":")
        if header != _HEADER:
            raise KeyError_(f"{path}: not a safepacs key file (expected '{_HEADER}:' header)")
        try:
            secret = base64.b64decode(body, validate=True)
        except ValueError:
            raise KeyError_(f"{path}: key file is corrupt (bad base64)") from None
        return cls(secret)

    def save(self, path: Path) -> None:
        """Write the key with mode 0600, atomically, refusing to overwrite."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(f"{_HEADER}:{base64.b64encode(self.secret).decode()}\n")

    # --- derivations --------------------------------------------------------------
    def _mac(self, purpose: str, value: str) -> bytes:
        msg = purpose.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
        return hmac.new(self.secret, msg, hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """Map a UID to a ``2.25.`` UID (PS3.5 B.2): deterministic, 44 characters at most."""
        digest = self._mac("uid", original.strip().rstrip("\x00"))
        return "2.25." + str(int.from_bytes(digest[:16], "big"))

    def pseudonym(self, kind: str, original: str, *, prefix: str = "SP") -> str:
        """A stable pseudonym for an identifier (e.g. PatientID), 18 characters."""
        digest = self._mac(f"id:{kind}", original.strip())
        return prefix + base64.b32encode(digest[:10]).decode("ascii")[:16]

    def date_offset_days(self, patient_key: str) -> int:
        """Days to subtract from every date of this patient (Modified Dates option)."""
        digest = self._mac("date", patient_key.strip())
        return 1 + int.from_bytes(digest[:4], "big") % MAX_SHIFT_DAYS

    def derive(self, purpose: str, length: int = 32) -> bytes:
        """An independent sub-key, e.g. for encrypting identity deltas."""
        return HKDF(
            algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode()
        ).derive(self.secret)

    def fingerprint(self) -> str:
        """A short non-secret identifier of the key, safe to print."""
        return hashlib.sha256(b"fingerprint\x00" + self.secret).hexdigest()[:16]
