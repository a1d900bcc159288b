"""People for archive tests: accounts made as the system administrator would (directly in the
index), access granted by the security administrator's own API, and a real sign-in
(password + TOTP) for the token.  Not a fixture module: tests and benchmarks import it."""

from __future__ import annotations

from datetime import UTC, datetime

import pyotp
from sqlalchemy import select
from sqlalchemy.orm import Session

from safepacs.access import totp
from safepacs.access.accounts import new_account
from safepacs.access.models import Account
from safepacs.access.passwords import hash_password
from safepacs.access.principal import Principal
from safepacs.index.models import Patient

PASSWORD = "a long synthetic test passphrase 42"


def admin(archive, role: str = "security_admin") -> Principal:
    """The bootstrap administrator of ``role`` (as a principal; its password is not needed
    to call the service layer directly)."""
    with Session(archive.access.ctx.engine) as s:
        acct = s.scalar(select(Account).where(Account.role == role))
        return Principal(acct.pk, acct.username, acct.role, "", "127.0.0.1")


def person(archive, username: str, role: str, *, patient: str | None = None) -> tuple[Principal, str]:
    """A new account of ``role`` with a set password and enrolled TOTP, signed in: returns
    (principal, access token)."""
    ctx = archive.access.ctx
    with Session(ctx.engine) as s, s.begin():
        acct, _ = new_account(s, username, role, "test", ctx.now())
        acct.password_hash = hash_password(PASSWORD)
        acct.must_change_password = False
        acct.patient_pseudonym = patient
        secret = totp.new_secret()
        acct.totp_sealed = ctx.keys.seal_value(secret.encode(), b"totp:%d" % acct.pk)
        acct.totp_confirmed = True
    code = pyotp.TOTP(secret).at(int(datetime.now(UTC).timestamp()))
    result = archive.access.login(username, PASSWORD, code, address="127.0.0.1")
    assert result.status == "ok", result.status
    who = archive.authenticate(result.access_token, address="127.0.0.1")
    assert who is not None
    return who, result.access_token


def patients(archive) -> list[str]:
    with Session(archive.access.ctx.engine) as s:
        return list(s.scalars(select(Patient.patient_id)))


def clinician(archive, username: str = "clinician", for_patients: list[str] | None = None) -> tuple[Principal, str]:
    """A physician with a care relationship to ``for_patients`` (pseudonyms; default: every
    patient stored now)."""
    who, token = person(archive, username, "physician")
    sec = admin(archive)
    for pid in patients(archive) if for_patients is None else for_patients:
        archive.access.grants.add_care(sec, who.account_id, pid)
    return who, token


def reader(archive, name: str = "reader") -> Principal:
    """A service account (the de-identified view of every study) as a principal; one per
    archive object and name."""
    cache = archive.__dict__.setdefault("_test_readers", {})
    if name not in cache:
        who = archive.authenticate(archive.create_token(name))
        assert who is not None
        cache[name] = who
    return cache[name]


def clinician_principal(archive, username: str = "clinician") -> Principal:
    """A physician caring for every patient stored when first asked; one per archive object
    (care relationships added later for patients stored since)."""
    cache = archive.__dict__.setdefault("_test_clinicians", {})
    if username not in cache:
        cache[username] = clinician(archive, username)[0]
    else:
        who = cache[username]
        sec = admin(archive)
        have = archive.access.grants.list_for(sec, who.account_id)
        cared = {c["patient"] for c in have.get("care", [])}
        for pid in set(patients(archive)) - cared:
            archive.access.grants.add_care(sec, who.account_id, pid)
    return cache[username]
