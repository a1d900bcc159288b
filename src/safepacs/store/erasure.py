"""k-of-n erasure coding of a byte string (Reed-Solomon, via the maintained ``zfec`` library).

Pure: bytes in, shards out, and back.  zfec's code is systematic (the first k shards are
the data cut in k pieces), which is fine here because what is split is already AES-GCM
ciphertext: no shard, and no k-1 shards, hold anything readable.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import zfec

from safepacs.errors import SafepacsError

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


def encode(data: bytes | bytearray | memoryview, k: int, n: int) -> list[bytes | memoryview]:
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
    coder = zfec.Encoder(k, n)
    wanted = list(range(k, n))
    if size <= STRIPE:
        return pieces + list(coder.encode(pieces, wanted))
    views = [memoryview(p) for p in pieces]
    stripes = list(_POOL.map(
        lambda a: coder.encode([v[a : a + STRIPE] for v in views], wanted), range(0, size, STRIPE)
    ))
    return pieces + [b"".join(s[j] for s in stripes) for j in range(n - k)]


def decode(shards: dict[int, bytes | memoryview], k: int, n: int, size: int) -> bytes:
    """The ``size``-byte message from at least ``k`` shards, by shard number (0..n-1)."""
    check_params(k, n)
    numbers = sorted(i for i in shards if 0 <= i < n)[:k]
    if len(numbers) < k:
        raise ErasureError(f"only {len(numbers)} shards available, {k} needed")
    lengths = {len(shards[i]) for i in numbers}
    if len(lengths) != 1 or lengths.pop() != shard_size(size, k):
        raise ErasureError("shards differ in size from the manifest")
    if numbers == list(range(k)):  # the data pieces themselves: no decoding needed
        pieces = [shards[i] for i in numbers]
    else:
        coder = zfec.Decoder(k, n)
        views = [memoryview(shards[i]) for i in numbers]
        width = len(views[0])
        stripes = list(_POOL.map(
            lambda a: coder.decode([v[a : a + STRIPE] for v in views], numbers), range(0, width, STRIPE)
        ))
        pieces = [b"".join(s[j] for s in stripes) for j in range(k)]
    out = b"".join(pieces)
    return out if len(out) == size else out[:size]
