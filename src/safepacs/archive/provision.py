"""Provisioning from the data dir itself: service accounts and their API tokens.

Whoever can open the data dir holds the key-encryption key, so can read every object
anyway; this path lets that person (the installer, a test, the demo) create an integration
account without an administrator login.  It is the only such path, it creates only
``service`` accounts (the de-identified view, never identity), and every use is audited as
a security alert, so the auditor sees it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from safepacs.access import tokens as tk
from safepacs.access.accounts import new_account
from safepacs.access.models import Account, ApiToken, Grant
from safepacs.access.service import AccessControl
from safepacs.audit.events import CREATE, SECURITY_ALERT

_VIA = "data-dir"


def service_token(access: AccessControl, name: str, *, days: int = 365) -> str:
    """An API token for the ``service`` account ``name`` (created with a one-year grant to
    every study as stored, when new).  Shown once; only its hash is kept."""
    if not name or len(name) > 64:
        raise ValueError("token name must be 1..64 characters")
    ctx = access.ctx
    now = ctx.now()
    token = tk.new_opaque(tk.API_TOKEN_PREFIX)
    with Session(ctx.engine) as s, s.begin():
        acct = s.scalar(select(Account).where(Account.username == name))
        if acct is None:
            acct, _ = new_account(s, name, "service", _VIA, now)
            acct.must_change_password = False
            acct.password_hash = ""  # no password: this account signs in with tokens only
            s.add(Grant(account_pk=acct.pk, level="deidentified", all_studies=True, starts_at=now,
                        ends_at=now + timedelta(days=days), created_by=_VIA, created_at=now))
        elif acct.role != "service":
            raise ValueError("that name belongs to an account that is not a service account")
        s.add(ApiToken(account_pk=acct.pk, name=name, token_hash=tk.digest(token), revoked=False,
                       created_at=now, expires_at=now + timedelta(days=days)))
        account_id = acct.pk
    ctx.emit(SECURITY_ALERT, CREATE, user=_VIA, route="cli:token create",
             reason="service account token provisioned from the data dir",
             detail={"account": account_id})
    return token
