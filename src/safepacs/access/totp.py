"""TOTP second factor (RFC 6238 via pyotp): 30 s steps, one step of clock drift either way,
and no code accepted twice (the last used step is remembered per account)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyotp

ISSUER = "safepacs"


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def matching_step(secret: str, code: str, now: datetime, last_step: int) -> int | None:
    """The time step ``code`` is valid for (within +-1 step of ``now``) if it is later than
    ``last_step``; None otherwise.  ``now`` is naive UTC."""
    if not code or not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    ts = int(now.replace(tzinfo=UTC).timestamp())
    step = ts // totp.interval
    for candidate in (step - 1, step, step + 1):
        if candidate > last_step and pyotp.utils.strings_equal(totp.at(candidate * totp.interval), code):
            return candidate
    return None


def code_at(secret: str, now: datetime) -> str:
    """The code for ``now`` (tests and the CLI's own checks)."""
    return pyotp.TOTP(secret).at(int(now.replace(tzinfo=UTC).timestamp()))

