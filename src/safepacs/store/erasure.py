"""k-of-n erasure coding of a byte string (Reed-Solomon, via the maintained ``zfec`` library).

Pure: bytes in, shards out, and back.  zfec's code is systematic (the first k shards are
the data cut in k pieces), which is fine here because what is split is already AES-GCM
ciphertext: no shard, and no k-1 shards, hold anything readable.

The arithmetic is zfec's code either way; where Intel ISA-L is installed it computes it
(see :mod:`safepacs.store.isal`: the same parity, byte for byte, some 30x faster), once a
self-check per (k, n) has shown that it agrees with zfec.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import zfec

from safepacs.errors import SafepacsError
from safepacs.store import isal

MAX_SHARDS = 256
#: Reed-Solomon works column by column (byte i of every shard), so a big shard is coded in
#: column stripes on several threads (zfec releases the GIL) and the stripes joined.
STRIPE = 1 << 20
_POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="safepacs-fec")


class ErasureError(SafepacsError):
    """Too few shards to rebuild, or parameters out of range."""


def check_params(k: int, n: int) -> None:
    if not (1 <= k <= n <= MAX_SHARDS):
        raise ErasureError(f"erasure code needs 1 <= k <= n <= {MAX_SHARDS} (got k={k}, n={n})")


def shard_size(size: int, k: int) -> int:
    """Bytes in each shard of a ``size``-byte message (the last data piece is zero-padded)."""
    return max(1, -(-size // k))


@functools.lru_cache(maxsize=64)
def coefficients(k: int, n: int) -> bytes:
    """zfec's parity matrix for (k, n), row-major ((n-k) x k): the code is linear, so
    coding the unit messages (one 1 among zeros) reads its columns off the parity."""
    coder = zfec.Encoder(k, n)
    columns = [coder.encode([b"\x01" if i == j else b"\x00" for i in range(k)], list(range(k, n)))
               for j in range(k)]
    return bytes(columns[j][r][0] for r in range(n - k) for j in range(k))


@functools.lru_cache(maxsize=64)
def _isal_tables(k: int, n: int) -> bytes | None:
    """ISA-L's tables for zfec's (k, n) code, or None when ISA-L is absent or, checked on a
    random sample, would not write exactly zfec's parity (then zfec does the work)."""
    if not isal.available() or n == k:
        return None
    tbls = isal.tables(coefficients(k, n), n - k, k)
    width = 4096 + 61  # more than one SIMD block, and a ragged end
    sample = [os.urandom(width) for _ in range(k)]
    ours = isal.apply(tbls, n - k, sample, width)
    theirs = zfec.Encoder(k, n).encode(sample, list(range(k, n)))
    return tbls if all(bytes(a) == bytes(b) for a, b in zip(ours, theirs, strict=True)) else None


def encode(data: bytes | bytearray | memoryview, k: int, n: int) -> list[bytes | bytearray | memoryview]:
    """``n`` shards of equal size, any ``k`` of which give ``data`` back (with its size).
    The first k are views of ``data`` itself where no padding is needed (no copy)."""
    check_params(k, n)
    view = memoryview(data).cast("B")
    size = shard_size(len(view), k)
    pieces: list[bytes | memoryview] = []
    for i in range(k):
        piece = view[i * size : (i + 1) * size]
        pieces.append(piece if len(piece) == size else bytes(piece) + b"\x00" * (size - len(piece)))
    if n == k:
        return pieces
    tbls = _isal_tables(k, n)
    if tbls is not None:
        return pieces + isal.apply(tbls, n - k, pieces, size)  # type: ignore[operator]
    coder = zfec.Encoder(k, n)
    wanted = list(range(k, n))
    if size <= STRIPE:
        return pieces + list(coder.encode(pieces, wanted))
    views = [memoryview(p) for p in pieces]
    stripes = list(_POOL.map(
        lambda a: coder.encode([v[a : a + STRIPE] for v in views], wanted), range(0, size, STRIPE)
    ))
    return pieces + [b"".join(s[j] for s in stripes) for j in range(n - k)]


def decode(shards: dict[int, bytes | memoryview], k: int, n: int, size: int) -> bytes | bytearray:
    """The ``size``-byte message from at least ``k`` shards, by shard number (0..n-1).
    Copied once into the result (the padding of the last piece is never copied)."""
    check_params(k, n)
    numbers = sorted(i for i in shards if 0 <= i < n)[:k]
    if len(numbers) < k:
        raise ErasureError(f"only {len(numbers)} shards available, {k} needed")
    lengths = {len(shards[i]) for i in numbers}
    width = shard_size(size, k)
    if len(lengths) != 1 or lengths.pop() != width:
        raise ErasureError("shards differ in size from the manifest")
    if numbers == list(range(k)):  # the data pieces themselves: no decoding needed
        views = [memoryview(shards[i]) for i in numbers]
        return b"".join(v[: max(0, size - i * width)] for i, v in enumerate(views))
    rebuilt = _isal_rebuild(shards, numbers, k, n, width)
    if rebuilt is not None:
        return b"".join(memoryview(p)[: max(0, size - i * width)] for i, p in enumerate(rebuilt))
    coder = zfec.Decoder(k, n)
    views = [memoryview(shards[i]) for i in numbers]
    starts = range(0, width, STRIPE)
    stripes = _POOL.map(lambda a: coder.decode([v[a : a + STRIPE] for v in views], numbers), starts)
    out = bytearray(size)
    for a, pieces in zip(starts, stripes, strict=True):
        for j, piece in enumerate(pieces):  # piece j, columns a.. of the message
            lo = j * width + a
            hi = min(lo + len(piece), size)
            if lo < hi:
                out[lo:hi] = memoryview(piece)[: hi - lo]
    return out


def _isal_rebuild(
    shards: dict[int, bytes | memoryview], numbers: list[int], k: int, n: int, width: int
) -> list[bytes | bytearray | memoryview] | None:
    """The k data pieces from shards ``numbers`` with ISA-L (None: use zfec).  Shard r is
    row r of the generator [identity; parity matrix] times the data, so the data is the
    inverse of those k rows times the shards; only the missing pieces are computed."""
    if _isal_tables(k, n) is None:
        return None
    coef = coefficients(k, n)
    rows = [bytes(int(i == r) for i in range(k)) if r < k else coef[(r - k) * k : (r - k + 1) * k] for r in numbers]
    inverse = isal.invert(b"".join(rows), k)
    if inverse is None:  # cannot happen for an MDS code; zfec will say what is wrong
        return None
    missing = [i for i in range(k) if i not in numbers]
    wanted = b"".join(inverse[i * k : (i + 1) * k] for i in missing)
    made = dict(zip(missing, isal.apply(isal.tables(wanted, len(missing), k), len(missing),
                                        [shards[r] for r in numbers], width), strict=True))
    return [made[i] if i in made else shards[i] for i in range(k)]
