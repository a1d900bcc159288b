"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs.

Pure functions over leaf hashes.  Proof *generation* takes a ``subtree(start, end)`` callable
returning the Merkle tree hash of leaves ``[start, end)``, so a caller with a million leaves in
a database can answer from cached perfect-subtree hashes instead of materialising the tree.
Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 literally.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Subtree = Callable[[int, int], bytes]


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry): the 0x00 prefix keeps leaves and nodes in separate domains."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf *hashes*, bottom-up; O(n) time, O(log n) extra memory."""
    if not leaves:
        return EMPTY_ROOT
    frontier = Frontier()
    for h in leaves:
        frontier.append(h)
    return frontier.root()


def subtree_of(leaves: Sequence[bytes]) -> Subtree:
    """A ``subtree`` callable over an in-memory list of leaf hashes."""
    return lambda start, end: root(leaves[start:end])


class Frontier:
    """The right edge of a growing tree: one perfect subtree hash per set bit of the size.

    Appending is amortised O(1) hashes (O(log n) worst case), the root O(log n); nothing else
    of the tree is kept.  ``on_node(level, index, hash)`` sees every perfect subtree as it is
    completed (level 0 = leaves), which is how a log caches the hashes its proofs need.
    """

    __slots__ = ("size", "_stack", "on_node")

    def __init__(self, on_node: Callable[[int, int, bytes], None] | None = None) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []  # (level, hash), levels strictly decreasing
        self.on_node = on_node

    @classmethod
    def from_subtrees(cls, size: int, hashes: Sequence[bytes]) -> Frontier:
        """Rebuild from the perfect subtree hashes of ``size`` (left to right)."""
        f = cls()
        levels = [b for b in range(size.bit_length() - 1, -1, -1) if size >> b & 1]
        if len(levels) != len(hashes):
            raise ValueError("one hash per set bit of the size is needed")
        f.size = size
        f._stack = list(zip(levels, hashes, strict=True))
        return f

    def copy(self) -> Frontier:
        f = Frontier(self.on_node)
        f.size = self.size
        f._stack = list(self._stack)
        return f

    def append(self, leaf: bytes) -> None:
        stack = self._stack
        level, h = 0, leaf
        index = self.size
        while stack and stack[-1][0] == level:
            h = node_hash(stack.pop()[1], h)
            level += 1
            index >>= 1
            if self.on_node is not None:
                self.on_node(level, index, h)
        stack.append((level, h))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        h = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h

    def subtrees(self) -> list[bytes]:
        return [h for _, h in self._stack]


def perfect_ranges(start: int, end: int) -> list[tuple[int, int]]:
    """Split ``[start, end)`` the way MTH does into aligned perfect subtrees (left to right).

    Valid for the ranges RFC 6962 proofs ask for, whose start is a multiple of a power of two
    at least as large as the range's left child."""
    out = []
    while end - start > 1:
        n = end - start
        if n & (n - 1) == 0:
            break
        k = _split(n)
        out.append((start, start + k))
        start += k
    out.append((start, end))
    return out


def combine(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from its perfect subtrees, as :func:`perfect_ranges` split it."""
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


# --- inclusion ------------------------------------------------------------------------------


def inclusion_proof(index: int, size: int, subtree: Subtree) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 6962 section 2.1.1, leaf to root."""
    if not 0 <= index < size:
        raise ValueError("index out of range")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start += k
    path.reverse()
    return path


def inclusion_proof_size(index: int, size: int) -> int:
    """Number of hashes in PATH(index, size): a function of the two numbers only."""
    if not 0 <= index < size:
        raise ValueError("index out of range")
    count, start, end = 0, 0, size
    while end - start > 1:
        k = _split(end - start)
        count += 1
        if index < start + k:
            end = start + k
        else:
            start += k
    return count


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """The root implied by a proof (RFC 9162 2.1.3.2), or None when the proof is malformed."""
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if len(p) != HASH_SIZE or sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root_hash: bytes) -> bool:
    r = root_from_inclusion(index, size, leaf, proof)
    return r is not None and r == root_hash


# --- consistency ----------------------------------------------------------------------------


def consistency_proof(first: int, second: int, subtree: Subtree) -> list[bytes]:
    """PROOF(first, D[0:second]) of RFC 6962 section 2.1.2 (SUBPROOF with b = true)."""
    if not 0 <= first <= second:
        raise ValueError("need 0 <= first <= second")
    if first == 0 or first == second:
        return []
    out: list[bytes] = []
    start, end, complete = 0, second, True
    m = first
    while True:
        n = end - start
        if m == n:
            if not complete:
                out.append(subtree(start, end))
            break
        k = _split(n)
        if m <= k:
            out.append(subtree(start + k, end))
            end = start + k
        else:
            out.append(subtree(start, start + k))
            start += k
            m -= k
            complete = False
    out.reverse()
    return out


def consistency_proof_size(first: int, second: int) -> int:
    return len(consistency_proof(first, second, lambda s, e: b""))


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2."""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof  # the empty tree is consistent with everything
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: first_root is itself the first node
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
