"""Bearer-token checks with a short memory, so a client's burst of requests does not cost a
database round trip each.

Only successful checks are remembered, keyed by a SHA-256 of the token (the token itself is
not kept), for ``ttl`` seconds (default 5): a token revoked in the database stops working
within that time.  Failures are never cached, so a new token works at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

#: query parameters named like a credential: a request carrying one is refused outright,
#: since URLs end up in proxy logs and browser history
TOKEN_PARAMS = frozenset({"access_token", "token", "refresh_token", "id_token", "jwt", "bearer",
                          "authorization", "api_key", "apikey", "setup_token"})


def token_in_query(names: Iterable[str]) -> bool:
    """True when any query parameter name is a credential's."""
    return any(name.lower() in TOKEN_PARAMS for name in names)


class TokenCache:
    def __init__(self, authenticate: Callable[..., Any], *, ttl: float = 5.0, size: int = 1024) -> None:
        self._authenticate = authenticate
        self._ttl = ttl
        self._size = size
        self._seen: dict[bytes, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, token: str, *, address: str = "") -> Any:
        key = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        now = time.monotonic()
        with self._lock:
            hit = self._seen.get(key)
        if hit is not None and hit[0] > now:
            who = hit[1]
            if getattr(who, "address", address) != address and dataclasses.is_dataclass(who):
                who = dataclasses.replace(who, address=address)  # the caller of THIS request
            return who
        who = self._authenticate(token, address=address)
        if who is not None:
            with self._lock:
                if len(self._seen) >= self._size:
                    self._seen = {k: v for k, v in self._seen.items() if v[0] > now}
                    if len(self._seen) >= self._size:
                        self._seen.clear()
                self._seen[key] = (now + self._ttl, who)
        return who
