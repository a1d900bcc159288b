"""Proofs from the stored trail, for anyone who can read the database (no signing key).

Subtree hashes come from the ``audit_nodes`` cache (perfect subtrees of 2**8 leaves and up)
and, below that, from at most 255 stored leaf hashes, so a proof among ten million entries
costs a few dozen small lookups.  A proof is only as good as the signed head it ends in:
callers verify it against that head, never against the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select, tuple_

from safepacs.audit import merkle
from safepacs.audit.heads import SignedHead
from safepacs.audit.models import AuditEntry, AuditHead, AuditNode
from safepacs.errors import SafepacsError

NODE_LEVEL = 8
BLOCK = 1 << NODE_LEVEL


class TrailGap(SafepacsError):
    """An entry a proof needs is missing from the database."""


@dataclass(frozen=True)
class InclusionProof:
    index: int
    leaf_hash: bytes
    proof: list[bytes]
    head: SignedHead

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "leaf_hash": self.leaf_hash.hex(),
            "proof": [p.hex() for p in self.proof],
            "head": self.head.to_dict(),
        }

    def verifies(self) -> bool:
        """Whether the proof leads to the head's root (check the head's signature apart)."""
        return merkle.verify_inclusion(self.index, self.head.size, self.leaf_hash, self.proof, self.head.root)


_HEAD_COLUMNS = select(AuditHead.size, AuditHead.root, AuditHead.timestamp, AuditHead.signature, AuditHead.key_id)


def _head(row) -> SignedHead:  # type: ignore[no-untyped-def]
    return SignedHead(row[0], bytes(row[1]), row[2], bytes(row[3]), row[4])


class TrailReader:
    """Heads, entries and proofs, read from the database; caches subtree hashes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.nodes: dict[tuple[int, int], bytes] = {}
        self._blocks: dict[int, list[bytes]] = {}

    def perfect(self, conn, level: int, idx: int) -> bytes:  # type: ignore[no-untyped-def]
        """Hash of the perfect subtree ``idx`` at ``level`` (leaves idx*2**level ...)."""
        if level >= NODE_LEVEL:
            h = self.nodes.get((level, idx))
            if h is None:
                h = conn.execute(
                    select(AuditNode.hash).where(AuditNode.level == level, AuditNode.idx == idx)
                ).scalar()
                if h is None:  # cache row missing: rebuild from the halves
                    h = merkle.node_hash(self.perfect(conn, level - 1, 2 * idx),
                                         self.perfect(conn, level - 1, 2 * idx + 1))
                h = bytes(h)
                self.nodes[(level, idx)] = h
            return h
        start = idx << level
        block, offset = divmod(start, BLOCK)
        leaves = self._block(conn, block)
        part = leaves[offset:offset + (1 << level)]
        if len(part) != 1 << level:
            raise TrailGap("the audit trail has a gap (run `safepacs audit verify`)")
        return merkle.root(part)

    def _block(self, conn, block: int) -> list[bytes]:  # type: ignore[no-untyped-def]
        """The leaf hashes of one aligned block of 256 entries (one query; full blocks are
        kept, a few at a time, as they never change)."""
        cached = self._blocks.get(block)
        if cached is not None:
            return cached
        leaves = []
        for i, h in conn.execute(
            select(AuditEntry.idx, AuditEntry.leaf_hash)
            .where(AuditEntry.idx >= block * BLOCK, AuditEntry.idx < (block + 1) * BLOCK)
            .order_by(AuditEntry.idx)
        ):
            if i != block * BLOCK + len(leaves):
                break  # a gap: only the contiguous start is usable
            leaves.append(bytes(h))
        if len(leaves) == BLOCK:
            if len(self._blocks) >= 64:
                self._blocks.pop(next(iter(self._blocks)))
            self._blocks[block] = leaves
        return leaves

    def prefetch(self, conn, ranges: list[tuple[int, int]]) -> None:  # type: ignore[no-untyped-def]
        """Load the cached node hashes a proof over ``ranges`` needs, in one query."""
        want = set()
        for start, end in ranges:
            for s, e in merkle.perfect_ranges(start, end):
                level = (e - s).bit_length() - 1
                if level >= NODE_LEVEL and (level, s >> level) not in self.nodes:
                    want.add((level, s >> level))
        if want:
            rows = conn.execute(select(AuditNode.level, AuditNode.idx, AuditNode.hash)
                                .where(tuple_(AuditNode.level, AuditNode.idx).in_(sorted(want))))
            for level, idx, h in rows:
                self.nodes[(level, idx)] = bytes(h)

    def subtree(self, conn):  # type: ignore[no-untyped-def]
        def hash_of(start: int, end: int) -> bytes:
            parts = []
            for s, e in merkle.perfect_ranges(start, end):
                level = (e - s).bit_length() - 1
                parts.append(self.perfect(conn, level, s >> level))
            return merkle.combine(parts)

        return hash_of

    def latest_head(self) -> SignedHead | None:
        with self._engine.connect() as conn:
            row = conn.execute(_HEAD_COLUMNS.order_by(AuditHead.size.desc()).limit(1)).first()
            return _head(row) if row else None

    def head(self, size: int) -> SignedHead | None:
        with self._engine.connect() as conn:
            row = conn.execute(_HEAD_COLUMNS.where(AuditHead.size == size)).first()
            return _head(row) if row else None

    def entry(self, index: int) -> bytes | None:
        with self._engine.connect() as conn:
            data = conn.execute(select(AuditEntry.entry).where(AuditEntry.idx == index)).scalar()
            return None if data is None else bytes(data)

    def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        """Proof that entry ``index`` is in the tree of the signed head at ``size`` (default:
        the newest head)."""
        head = self.latest_head() if size is None else self.head(size)
        if head is None or not 0 <= index < head.size:
            raise ValueError("no signed head covers that index")
        with self._engine.connect() as conn:
            leaf = conn.execute(select(AuditEntry.leaf_hash).where(AuditEntry.idx == index)).scalar()
            if leaf is None:
                raise ValueError("no such entry")
            ranges: list[tuple[int, int]] = []
            merkle.inclusion_proof(index, head.size, lambda a, b: ranges.append((a, b)) or b"")
            self.prefetch(conn, ranges)
            proof = merkle.inclusion_proof(index, head.size, self.subtree(conn))
        return InclusionProof(index, bytes(leaf), proof, head)

    def consistency_proof(self, first: int, second: int, *, limit: int | None = None) -> list[bytes]:
        """Proof that the tree at ``second`` extends the tree at ``first``."""
        if limit is None:
            head = self.latest_head()
            limit = head.size if head else 0
        if not 0 <= first <= second <= limit:
            raise ValueError("need 0 <= first <= second <= the newest signed size")
        with self._engine.connect() as conn:
            ranges: list[tuple[int, int]] = []
            merkle.consistency_proof(first, second, lambda a, b: ranges.append((a, b)) or b"")
            self.prefetch(conn, ranges)
            return merkle.consistency_proof(first, second, self.subtree(conn))


def inclusion_proof(engine: Engine, index: int, size: int | None = None) -> InclusionProof:
    return TrailReader(engine).inclusion_proof(index, size)
