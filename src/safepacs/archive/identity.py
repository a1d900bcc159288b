"""The encrypted identity index: find patients by their ORIGINAL PatientID or name.

Nothing original is stored in the clear.  Per patient and distinct original identity the
index keeps a keyed hash of the original PatientID (exact lookups without decryption) and
the original (PatientID, PatientName, PatientAddress) sealed with AES-256-GCM, bound to the
patient's pseudonym (the address only feeds the audit trail's same-address rule, as a keyed
token).  Wildcard and name queries decrypt the sealed entries in memory; plaintext
never goes to disk.  Both keys are derived from the site's index key, which the KEK wraps.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from safepacs.store.crypto import TamperedError, derive, keyed_hash


@dataclass(frozen=True)
class OriginalIdentity:
    patient_id: str
    patient_name: str
    patient_address: str = ""  # the first seen for this (ID, name); never matched in queries


class IdentityIndex:
    """Keyed hashes and sealing for original identifiers."""

    def __init__(self, index_key: bytes) -> None:
        self._hash_key = derive(index_key, "safepacs identity hash")
        self._aead = AESGCM(derive(index_key, "safepacs identity seal"))

    def id_hash(self, patient_id: str) -> str:
        return keyed_hash(self._hash_key, "PatientID", patient_id.strip())

    def accession_hash(self, accession: str) -> str:
        return keyed_hash(self._hash_key, "AccessionNumber", accession.strip())

    def uid_hash(self, uid: str) -> str:
        """Keyed hash of an original UID (lets STOW map responses without the raw UID)."""
        return keyed_hash(self._hash_key, "UID", uid.strip().rstrip("\x00"))

    def entry_hash(self, ident: OriginalIdentity) -> str:
        return keyed_hash(self._hash_key, "entry", ident.patient_id.strip() + "\x00" + ident.patient_name)

    def seal(self, ident: OriginalIdentity, pseudonym: str) -> bytes:
        nonce = os.urandom(12)
        plain = json.dumps([ident.patient_id, ident.patient_name, ident.patient_address],
                           ensure_ascii=False).encode()
        return nonce + self._aead.encrypt(nonce, plain, b"identity\x00" + pseudonym.encode())

    def open(self, sealed: bytes, pseudonym: str) -> OriginalIdentity:
        try:
            plain = self._aead.decrypt(sealed[:12], sealed[12:], b"identity\x00" + pseudonym.encode())
        except InvalidTag:
            raise TamperedError("an identity index entry failed its integrity check") from None
        values = json.loads(plain)  # entries sealed before addresses were kept have two
        return OriginalIdentity(*values[:3])
