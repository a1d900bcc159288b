"""Argon2id password hashing (argon2-cffi's RFC 9106 low-memory profile) and the length rule."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()  # Argon2id, t=3, m=64 MiB, p=4
# Verified when the username does not exist, so a wrong name costs as long as a wrong password.
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True only for the right password; an unknown account (or one without a password,
    such as a token-only service account) still pays for one hash, and is refused."""
    try:
        ok = _HASHER.verify(stored or _DUMMY, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return bool(ok and stored)


def one_time_password() -> str:
    """A random password handed out once (must be changed at first login)."""
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


def password_problem(password: str, *, min_length: int) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < min_length:
        return f"password must be at least {min_length} characters"
    if len(password) > 1024:
        return "password is too long"
    if len(set(password)) < 5:
        return "password is too repetitive"
    return None
