"""Shamir's secret sharing, k-of-m over GF(2^8), byte by byte (for 32-byte data keys).

A small module of our own rather than a dependency: no maintained, typed PyPI package for
this was installable here, and the whole algorithm is a polynomial per byte.  Field: the
AES polynomial x^8+x^4+x^3+x+1 with generator 3.  Coefficients come from ``secrets``.
A share is (x, y-bytes) with x in 1..255; any k shares rebuild the secret by Lagrange
interpolation at 0, and k-1 shares say nothing about it (every secret is equally likely).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from safepacs.errors import SafepacsError

_EXP = [0] * 512
_LOG = [0] * 256
_v = 1
for _i in range(255):
    _EXP[_i] = _v
    _LOG[_v] = _i
    _v ^= (_v << 1) ^ (0x11B if _v & 0x80 else 0)  # multiply by 3 = x + 1
    _v &= 0xFF
for _i in range(255, 512):
    _EXP[_i] = _EXP[_i - 255]


class ShamirError(SafepacsError):
    """Wrong parameters, too few or inconsistent shares."""


@dataclass(frozen=True)
class Share:
    x: int  # 1..255
    y: bytes

    def to_bytes(self) -> bytes:
        return bytes([self.x]) + self.y

    @classmethod
    def from_bytes(cls, raw: bytes) -> Share:
        if len(raw) < 2 or raw[0] == 0:
            raise ShamirError("malformed share")
        return cls(raw[0], bytes(raw[1:]))


def mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("division by zero in GF(256)")
    if a == 0:
        return 0
    return _EXP[_LOG[a] + 255 - _LOG[b]]


def _eval(coeffs: list[int], x: int) -> int:
    result = 0
    for c in reversed(coeffs):  # Horner
        result = mul(result, x) ^ c
    return result


def split(secret: bytes, k: int, m: int) -> list[Share]:
    """``m`` shares (x = 1..m), any ``k`` of which rebuild ``secret``."""
    if not (1 <= k <= m <= 255):
        raise ShamirError(f"Shamir sharing needs 1 <= k <= m <= 255 (got k={k}, m={m})")
    if not secret:
        raise ShamirError("nothing to share")
    ys = [bytearray() for _ in range(m)]
    for byte in secret:
        coeffs = [byte] + [secrets.randbelow(256) for _ in range(k - 1)]
        for i in range(m):
            ys[i].append(_eval(coeffs, i + 1))
    return [Share(i + 1, bytes(y)) for i, y in enumerate(ys)]


def combine(shares: list[Share], k: int) -> bytes:
    """The secret from ``k`` distinct shares (extra shares are ignored).

    Fewer than ``k`` shares is an error, never a wrong answer handed on silently; note that
    k wrong-but-well-formed shares give a wrong secret, which the caller detects (the data
    key then fails its AES-GCM check).
    """
    distinct: dict[int, bytes] = {}
    for share in shares:
        if not 1 <= share.x <= 255:
            raise ShamirError("malformed share")
        if distinct.setdefault(share.x, share.y) != share.y:
            raise ShamirError("two different shares claim the same number")
    if len(distinct) < k:
        raise ShamirError(f"{len(distinct)} shares given, {k} needed")
    xs = sorted(distinct)[:k]
    length = {len(distinct[x]) for x in xs}
    if len(length) != 1:
        raise ShamirError("shares differ in length")
    # Lagrange basis at 0: l_j = prod_{m != j} x_m / (x_m - x_j); minus is xor in GF(2^8)
    basis = []
    for j in xs:
        num = den = 1
        for other in xs:
            if other != j:
                num = mul(num, other)
                den = mul(den, other ^ j)
        basis.append(div(num, den))
    out = bytearray(length.pop())
    for lj, x in zip(basis, xs, strict=True):
        y = distinct[x]
        for pos in range(len(out)):
            out[pos] ^= mul(lj, y[pos])
    return bytes(out)
