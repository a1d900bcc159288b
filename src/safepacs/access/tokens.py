"""Access tokens (JWT, HS256, 15 minutes, ``iss``/``aud`` checked) and opaque refresh / API
tokens (random, stored only as SHA-256).  Pure functions: the clock is an argument."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

ISSUER = "safepacs"
AUDIENCE = "safepacs-api"
ALGORITHM = "HS256"
API_TOKEN_PREFIX = "sp_"
REFRESH_PREFIX = "spr_"
SCOPES = ("full", "setup")  # setup: only change password / enrol TOTP


@dataclass(frozen=True)
class Claims:
    account_id: int
    username: str
    role: str
    jti: str
    family: str
    scope: str
    via: str
    expires: datetime


class TokenInvalid(Exception):
    """Why a token was refused, in words safe to log ("expired", "bad signature"...)."""


def _ts(when: datetime) -> int:
    return int(when.replace(tzinfo=UTC).timestamp())


def issue_access(key: bytes, *, account_id: int, username: str, role: str, family: str,
                 scope: str, via: str, now: datetime, minutes: int) -> tuple[str, Claims]:
    jti = f"{family}:{secrets.token_hex(8)}"
    expires = now + timedelta(minutes=minutes)
    payload = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": str(account_id), "name": username, "role": role,
        "jti": jti, "sid": family, "scope": scope, "via": via,
        "iat": _ts(now), "nbf": _ts(now), "exp": _ts(expires),
    }
    token = jwt.encode(payload, key, algorithm=ALGORITHM, headers={"typ": "at+jwt"})
    return token, Claims(account_id, username, role, jti, family, scope, via, expires)


def verify_access(key: bytes, token: str, now: datetime) -> Claims:
    """Signature, algorithm, issuer, audience and required claims by pyjwt; times against
    ``now`` (an injected clock) here."""
    try:
        data = jwt.decode(
            token, key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
            options={"require": ["exp", "iat", "nbf", "sub", "jti", "aud", "iss"],
                     "verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.InvalidAudienceError:
        raise TokenInvalid("token for another audience") from None
    except jwt.InvalidIssuerError:
        raise TokenInvalid("token from another issuer") from None
    except jwt.InvalidSignatureError:
        raise TokenInvalid("bad token signature") from None
    except jwt.PyJWTError:
        raise TokenInvalid("malformed token") from None
    ts = _ts(now)
    try:
        exp, nbf = int(data["exp"]), int(data["nbf"])
        claims = Claims(
            account_id=int(data["sub"]), username=str(data["name"]), role=str(data["role"]),
            jti=str(data["jti"]), family=str(data["sid"]), scope=str(data["scope"]),
            via=str(data.get("via", "password")),
            expires=datetime.fromtimestamp(exp, UTC).replace(tzinfo=None),
        )
    except (KeyError, TypeError, ValueError):
        raise TokenInvalid("malformed token") from None
    if ts >= exp:
        raise TokenInvalid("expired token")
    if ts + 5 < nbf:
        raise TokenInvalid("token not yet valid")
    if claims.scope not in SCOPES:
        raise TokenInvalid("malformed token")
    return claims


def new_opaque(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def new_family() -> str:
    return secrets.token_hex(16)
