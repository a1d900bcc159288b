"""First run: the three administrator accounts, one per separated role, each with a
one-time password that must be changed (and a second factor enrolled) at first login."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from safepacs.access.accounts import new_account
from safepacs.access.context import utc_now
from safepacs.access.errors import Conflict
from safepacs.access.keyfile import load_keys
from safepacs.access.models import Account
from safepacs.access.principal import ADMIN_ROLES
from safepacs.audit.events import CREATE, SECURITY_ALERT, AuditEvent, AuditSink, LogSink

if TYPE_CHECKING:
    from safepacs.store.service_keys import SecretSource

USERNAMES = {"system_admin": "sysadmin", "security_admin": "secadmin", "security_auditor": "auditor"}


def bootstrap(engine: Engine, keys_dir: Path | SecretSource, *, audit: AuditSink | None = None) -> dict[str, tuple[str, str]]:
    """Create the access key (an archive's wrapped secret, or a bare folder's file) and the
    three administrators; returns ``{role: (username, one_time_password)}`` to be shown
    once.  Refuses a second run."""
    load_keys(keys_dir, create=True)
    sink = audit or LogSink()
    now = utc_now()
    created: dict[str, tuple[str, str]] = {}
    with Session(engine) as s, s.begin():
        if s.scalar(select(Account.pk).where(Account.role.in_(ADMIN_ROLES)).limit(1)) is not None:
            raise Conflict("administrator accounts exist already")
        for role in ADMIN_ROLES:
            acct, password = new_account(s, USERNAMES[role], role, "init", now)
            created[role] = (acct.username, password)
    for role, (username, _) in created.items():
        sink.record(AuditEvent(SECURITY_ALERT, CREATE, user="init", route="cli:init",
                               reason="administrator account created",
                               detail={"account_name": username, "account_role": role}))
    return created
