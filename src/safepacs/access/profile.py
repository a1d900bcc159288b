"""Reader profiles and patient families, as the anomaly rules need them.

The rules "reader and patient share a family name or address" and "own record opened through
a clinical role" compare a reader with a patient.  Neither side may appear in clear in an
event, so both are reduced to the same keyed hash (HMAC-SHA-256 under a key derived from the
access key file, after NFKC, case folding and whitespace collapsing): equal names give equal
tokens, and a token says nothing without the key.  The system administrator sets a reader's
profile; the archive supplies the patient side from its decrypted identity cache."""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from safepacs.access.context import Context
from safepacs.access.errors import AccessError, NotFound
from safepacs.access.guard import require
from safepacs.access.keyfile import AccessKeys
from safepacs.access.models import Account, Profile
from safepacs.access.principal import Principal
from safepacs.audit.events import SECURITY_ALERT, UPDATE
from safepacs.index.models import Patient

log = logging.getLogger(__name__)

PSEUDONYM = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_TEXT = 512
_TTL = 60.0  # seconds a cached profile is trusted (other processes may change it)
_MAX_CACHED = 200_000

#: what an ``enrich`` callback returns: detail key -> the patient's candidate tokens
PatientTokens = Mapping[str, Sequence[str]]


def normalise(value: str) -> str:
    """NFKC, case-folded, inner whitespace collapsed to one space, ends trimmed."""
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def family_of(patient_name: str) -> str:
    """The family name of a DICOM PN value: first ``^`` component of its alphabetic group."""
    return patient_name.split("=", 1)[0].split("^", 1)[0]


class ProfileHasher:
    """The one keyed hash both sides use; ``kind`` separates family names from addresses."""

    def __init__(self, keys: AccessKeys) -> None:
        self._key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                         info=b"safepacs-access:profile-hash").derive(keys.seal)

    def token(self, kind: str, value: str | None) -> str | None:
        """The token of ``value``, or None when nothing is left after normalising."""
        text = normalise(value or "")
        if not text:
            return None
        msg = kind.encode() + b"\x00" + text.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, msg, "sha256").hexdigest()

    def family(self, value: str | None) -> str | None:
        return self.token("family", value)

    def address(self, value: str | None) -> str | None:
        return self.token("address", value)


@dataclass(frozen=True)
class ReaderProfile:
    family: str | None = None
    address: str | None = None
    own_patient: str | None = None
    department: str | None = None  # the reader's department, in clear: patients see it


class Profiles:
    """The system administrator's desk for reader profiles, and a small read cache for
    ``decide`` (which must stay fast)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.hasher = ProfileHasher(ctx.keys)
        self._cache: dict[int, tuple[float, ReaderProfile]] = {}
        self._lock = threading.Lock()

    def set(self, who: Principal, account_id: int, *, family_name: str | None = None,
            address: str | None = None, own_patient: str | None = None,
            department: str | None = None) -> ReaderProfile:
        """Replace an account's profile.  Family name and address arrive in clear and are
        kept only as tokens; the event says which fields are set, never their values."""
        route = "POST /api/accounts/{id}/profile"
        require(self.ctx, who, "account.profile", target_account=account_id, route=route)
        for text in (family_name, address):
            if text is not None and len(text) > MAX_TEXT:
                raise AccessError(f"family name and address are at most {MAX_TEXT} characters")
        if own_patient is not None and not PSEUDONYM.match(own_patient):
            raise AccessError("malformed patient pseudonym")
        if department is not None and len(department) > 128:
            raise AccessError("a department is at most 128 characters")
        profile = ReaderProfile(self.hasher.family(family_name), self.hasher.address(address),
                                own_patient or None, (department or "").strip() or None)
        with Session(self.ctx.engine) as s, s.begin():
            if s.get(Account, account_id) is None:
                raise NotFound("no such account")
            row = s.get(Profile, account_id) or Profile(account_pk=account_id)
            row.family_hash, row.address_hash = profile.family, profile.address
            row.own_patient, row.department = profile.own_patient, profile.department
            row.updated_by, row.updated_at = who.username, self.ctx.now()
            s.add(row)
        with self._lock:
            self._cache.pop(account_id, None)
        self.ctx.emit(SECURITY_ALERT, UPDATE, who=who, route=route, reason="reader profile set",
                      detail={"account": account_id, "family": profile.family is not None,
                              "address": profile.address is not None,
                              "own_patient": profile.own_patient is not None})
        return profile

    def get(self, account_id: int) -> ReaderProfile:
        """The account's profile (empty when none), cached for a minute."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(account_id)
        if hit is not None and now - hit[0] < _TTL:
            return hit[1]
        with Session(self.ctx.engine) as s:
            row = s.get(Profile, account_id)
            profile = (ReaderProfile(row.family_hash, row.address_hash, row.own_patient, row.department)
                       if row is not None else ReaderProfile())
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[account_id] = (now, profile)
        return profile


class PatientFamilies:
    """The archive's ``enrich`` callback: a patient pseudonym -> the tokens of the patient's
    original family names and addresses (every identity stored under that pseudonym).
    Cached per patient in memory; a patient with no identity yet is asked again after a
    minute."""

    def __init__(self, hasher: ProfileHasher, engine: Engine,
                 identities: Callable[[], Mapping[int, Sequence[object]]]) -> None:
        self._hasher = hasher
        self._engine = engine
        self._identities = identities
        self._cache: dict[str, tuple[float, PatientTokens]] = {}
        self._lock = threading.Lock()

    def __call__(self, pseudonym: str) -> PatientTokens:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(pseudonym)
        if hit is not None and (hit[1] or now - hit[0] < _TTL):
            return hit[1]
        with Session(self._engine) as s:
            pk = s.scalar(select(Patient.pk).where(Patient.patient_id == pseudonym))
        idents = self._identities().get(pk, ()) if pk is not None else ()
        families = _distinct(self._hasher.family(family_of(getattr(i, "patient_name", "") or "")) for i in idents)
        addresses = _distinct(self._hasher.address(getattr(i, "patient_address", "") or "") for i in idents)
        tokens: PatientTokens = {}
        if families:
            tokens["patient_family"] = families
        if addresses:
            tokens["patient_address"] = addresses
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[pseudonym] = (now, tokens)
        return tokens


def _distinct(tokens: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t for t in tokens if t is not None))


def pick(reader: str | None, candidates: Sequence[str]) -> str | None:
    """The patient token to record: the reader's own when it is among the candidates (so
    the rule sees the match), else the first."""
    if not candidates:
        return None
    return reader if reader is not None and reader in candidates else candidates[0]
