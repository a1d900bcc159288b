"""Searching outputs for planted values of the synthetic answer key."""

from __future__ import annotations


def found_in(value: bytes, blob: bytes) -> bool:
    """``value`` occurs in ``blob``.  A number, or a value shorter than six bytes, counts only
    where it stands alone: a planted size of 1.522 is not "found" in the time stamp
    10:41:21.522913, nor the surname Liu in the content hash b3:hKip...dLiu7NzY (random
    base64 holds any given three letters about once in 260 kB)."""
    if not value.replace(b".", b"").isdigit() and len(value) >= 6:
        return value in blob
    start = 0
    while (i := blob.find(value, start)) >= 0:
        before, after = blob[i - 1 : i], blob[i + len(value) : i + len(value) + 1]
        if not (before.isalnum() or before == b".") and not after.isalnum():
            return True
        start = i + 1
    return False
