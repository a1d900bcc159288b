"""The token cache remembers successes briefly, never failures, and never the token itself."""

from __future__ import annotations

import time

from safepacs.api.tokens import TokenCache


def test_success_is_remembered_for_the_ttl_then_asked_again():
    calls = []
    valid = {"good"}

    def check(token, address=""):
        calls.append(token)
        return "alice" if token in valid else None

    cache = TokenCache(check, ttl=0.2)
    assert cache("good") == "alice" and cache("good") == "alice"
    assert calls == ["good"]
    valid.clear()  # revoked
    assert cache("good") == "alice"  # within the ttl
    time.sleep(0.25)
    assert cache("good") is None
    assert b"good" not in b"".join(cache._seen)


def test_failures_are_not_cached():
    valid: set[str] = set()
    cache = TokenCache(lambda t, address="": "bob" if t in valid else None, ttl=60)
    assert cache("new") is None
    valid.add("new")
    assert cache("new") == "bob"


def test_size_is_bounded():
    cache = TokenCache(lambda t, address="": t, ttl=60, size=10)
    for i in range(50):
        cache(f"t{i}")
    assert len(cache._seen) <= 10
