"""Access-core fixtures: a real SQLite index at the current schema, a settable clock, an
in-memory audit sink, and helpers that create accounts and index rows directly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from safepacs.access import passwords, totp
from safepacs.access.models import Account
from safepacs.access.principal import Principal
from safepacs.access.service import AccessControl
from safepacs.audit.events import MemorySink
from safepacs.index import db
from safepacs.index.models import Patient, Study

T0 = datetime(2026, 3, 1, 8, 0, 0)
PASSWORD = "correct horse battery staple"
_HASH = passwords.hash_password(PASSWORD)  # one Argon2id run for the whole session


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass
class User:
    principal: Principal
    password: str
    secret: str | None

    @property
    def id(self) -> int:
        return self.principal.account_id

    def code(self, clock: Clock) -> str:
        assert self.secret
        return totp.code_at(self.secret, clock.now)


@pytest.fixture
def engine(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'index.sqlite'}")
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def ac(engine, tmp_path, clock, sink) -> AccessControl:
    return AccessControl(engine, tmp_path / "keys", audit=sink, clock=clock)


@pytest.fixture
def make_user(ac):
    """An active account with a known password and (for roles that need one) a TOTP secret."""

    def make(username: str, role: str, *, with_totp: bool | None = None, patient: str | None = None) -> User:
        need = ac.policy.needs_totp(role) if with_totp is None else with_totp
        with Session(ac.ctx.engine) as s, s.begin():
            acct = Account(username=username, role=role, password_hash=_HASH, totp_confirmed=False,
                           totp_last_step=0, must_change_password=False, failed_count=0,
                           disabled=False, patient_pseudonym=patient, created_by="test", created_at=T0)
            s.add(acct)
            s.flush()
            secret = None
            if need:
                secret = totp.new_secret()
                acct.totp_sealed = ac.ctx.keys.seal_value(secret.encode(), b"totp:%d" % acct.pk)
                acct.totp_confirmed = True
            pk = acct.pk
        return User(Principal(pk, username, role, "", "127.0.0.1"), PASSWORD, secret)

    return make


@pytest.fixture
def studies(engine) -> dict[str, list[str]]:
    """Two patients (pseudonyms PSEUDO-A, PSEUDO-B) with two studies each."""
    out: dict[str, list[str]] = {}
    with Session(engine) as s, s.begin():
        for n, pid in enumerate(("PSEUDO-A", "PSEUDO-B"), start=1):
            p = Patient(patient_id=pid, patient_name="", birth_date="", sex="")
            s.add(p)
            s.flush()
            uids = [f"2.25.{n}000{k}" for k in (1, 2)]
            for uid in uids:
                s.add(Study(study_uid=uid, patient_pk=p.pk))
            out[pid] = uids
    return out
