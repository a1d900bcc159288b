"""Errors of the access core; every message is safe to show (no names, no secrets)."""

from __future__ import annotations

from safepacs.errors import SafepacsError


class AccessError(SafepacsError):
    """Base class; ``status`` is the HTTP status the API answers with."""

    status = 400


class Unauthenticated(AccessError):
    status = 401


class Forbidden(AccessError):
    status = 403


class NotFound(AccessError):
    status = 404


class Conflict(AccessError):
    status = 409


class TooManyAttempts(AccessError):
    status = 429
