"""The tamper-evident audit log: an append-only RFC 6962 Merkle tree in the index database.

``AuditLog`` is an :class:`~safepacs.audit.events.AuditSink`.  ``record`` only serialises the
event and queues it; a writer (a background thread, or the caller once a batch is full)
appends queued events in one transaction together with the signed heads that cover them,
so a committed entry is always covered by a committed head.  The right edge of the tree
(one hash per set bit of the size) is kept in memory, so an append costs O(log n) hashes;
perfect subtrees of 256 leaves and more are cached in ``audit_nodes`` for proofs.

Fail closed: when the log cannot be written, ``record`` raises :class:`AuditUnavailable`
so the caller refuses the request instead of serving it unaudited.  There is no delete.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from safepacs.audit import merkle
from safepacs.audit.courtesy import Courtesy
from safepacs.audit.events import AuditEvent
from safepacs.audit.heads import SignedHead, Signer
from safepacs.audit.models import AuditEntry, AuditHead, AuditNode
from safepacs.audit.proofs import NODE_LEVEL, InclusionProof, TrailReader
from safepacs.audit.witness import Witness

if TYPE_CHECKING:
    from safepacs.store.service_keys import SecretSource
from safepacs.errors import SafepacsError

RETENTION_DAYS_DEFAULT = 183  # at least six months; the trail itself is never deleted by safepacs


# plain statements: no per-value bind processing on the hot path (bytes and ints pass as is)
_INSERT_ENTRIES = text(
    "INSERT INTO audit_entries (idx, entry, leaf_hash, patient, study_uid) "
    "VALUES (:idx, :entry, :leaf_hash, :patient, :study_uid)"
)
_INSERT_HEADS = text(
    "INSERT INTO audit_heads (size, root, timestamp, signature, key_id) "
    "VALUES (:size, :root, :timestamp, :signature, :key_id)"
)


class AuditUnavailable(SafepacsError):
    """The audit log cannot be written; whatever was being audited must not go ahead."""


def entry_bytes(event: AuditEvent) -> bytes:
    return event.to_json().encode("utf-8")


class AuditLog:
    """Append events, sign a head at every multiple of ``sign_every`` (and at the end of every
    batch), publish the newest head of each batch to ``witnesses``; answer proofs."""

    def __init__(
        self,
        engine: Engine,
        keys_dir: Path | SecretSource,
        *,
        sign_every: int = 1,
        witnesses: Sequence[Witness] = (),
        batch_size: int = 512,
        flush_interval: float = 0.05,
        background: bool = True,
        clock=time.time,  # type: ignore[no-untyped-def]
    ) -> None:
        if sign_every < 1 or batch_size < 1:
            raise ValueError("sign_every and batch_size must be positive")
        self._engine = engine
        self._signer = Signer(keys_dir)
        self.public_key = self._signer.public_key
        self.sign_every = sign_every
        self.witnesses = list(witnesses)
        self.batch_size = batch_size
        self._clock = clock
        self._lock = threading.RLock()  # guards the tree state and the writes
        self._queue_lock = threading.Lock()
        self._pending: list[tuple[bytes, bytes, str, str]] = []
        self._wake = threading.Event()
        self._closed = False
        self._failed: str | None = None
        self.reader = TrailReader(engine)
        self._load()
        self._thread: threading.Thread | None = None
        self._interval = flush_interval
        self._courtesy = Courtesy()  # the writer thread's pauses (see safepacs.audit.courtesy)
        if background:
            self._thread = threading.Thread(target=self._run, name="audit-log-writer", daemon=True)
            self._thread.start()

    # --- sink ---------------------------------------------------------------------------

    def record(self, event: AuditEvent, *, wait: bool = False) -> None:
        """Queue ``event``; with ``wait`` return only once it is durable (one commit)."""
        if self._failed:
            raise AuditUnavailable(f"the audit log cannot be written ({self._failed})")
        if self._closed:
            raise AuditUnavailable("the audit log is closed")
        data = entry_bytes(event)
        item = (data, merkle.leaf_hash(data), event.patient[:64], event.study_uid[:64])
        with self._queue_lock:
            self._pending.append(item)
            queued = len(self._pending)
        if wait:
            self.flush()
            return
        if queued < self.batch_size:
            return  # the writer thread (or the caller's flush/close) writes it
        if self._thread is None or queued >= 4 * self.batch_size:
            self.flush()  # no writer thread, or it cannot keep up: push back on the caller
        else:
            self._wake.set()

    def record_many(self, events: Iterable[AuditEvent]) -> None:
        for e in events:
            self.record(e)

    def flush(self) -> None:
        """Append everything queued, durably; raises AuditUnavailable when that fails.

        On failure nothing queued is dropped: the batch goes back to the queue, ``record``
        refuses new events (fail closed) and the writer keeps retrying; the first write that
        succeeds lifts the refusal."""
        with self._lock:
            with self._queue_lock:
                batch, self._pending = self._pending, []
            if not batch:
                return
            head, failure = None, "write conflict"
            for attempt in range(30):
                try:
                    head = self._append(batch)
                    break
                except (IntegrityError, OperationalError) as exc:
                    # another writer appended first (another process), or the database is
                    # busy or gone: catch up and retry
                    failure = exc.__class__.__name__
                    time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # jitter: writers take turns
                    try:
                        self._load()
                    except (SQLAlchemyError, SafepacsError):
                        pass
                except SQLAlchemyError as exc:
                    failure = exc.__class__.__name__
                    break
            if head is None:
                with self._queue_lock:
                    self._pending = batch + self._pending
                self._failed = failure
                raise AuditUnavailable(f"the audit log cannot be written ({failure})")
            self._failed = None
        for w in self.witnesses:
            try:
                w.publish(head)
            except OSError:
                pass  # a witness that is down misses one head; the next one covers it

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)  # a group commit every interval, or when a batch is full
            self._wake.clear()
            try:
                self.flush()
            except AuditUnavailable:
                time.sleep(self._interval)  # keep trying; record() refuses meanwhile

    # --- state --------------------------------------------------------------------------

    @property
    def writer_pauses(self) -> int:
        """How often the writer thread paused for request threads (see :mod:`.courtesy`)."""
        return self._courtesy.pauses

    @property
    def size(self) -> int:
        return self._frontier.size

    def root(self) -> bytes:
        return self._frontier.root()

    def _load(self) -> None:
        """Read the size, the newest head and the right edge of the tree from the database."""
        with self._engine.connect() as conn:
            n = conn.execute(select(func.max(AuditEntry.idx))).scalar()
            size = 0 if n is None else n + 1
            last = conn.execute(select(func.max(AuditHead.size))).scalar()
            hashes = []
            start = 0
            for b in range(size.bit_length() - 1, -1, -1):
                if size >> b & 1:
                    hashes.append(self.reader.perfect(conn, b, start >> b))
                    start += 1 << b
        self._frontier = merkle.Frontier.from_subtrees(size, hashes)
        self._last_head = last or 0

    def _append(self, batch: list[tuple[bytes, bytes, str, str]]) -> SignedHead:
        nodes: list[dict] = []

        def keep(level: int, idx: int, h: bytes) -> None:
            if level >= NODE_LEVEL:
                nodes.append({"level": level, "idx": idx, "hash": h})

        f = self._frontier.copy()
        f.on_node = keep
        rows, heads = [], []
        last = self._last_head
        now = int(self._clock() * 1000)
        # the writer thread pauses between entries; a caller's own flush does not
        courtesy = self._courtesy if threading.current_thread() is self._thread else None
        if courtesy is not None:
            courtesy.start()
        for data, leaf, patient, study in batch:
            if courtesy is not None:
                courtesy.tick()
            rows.append({"idx": f.size, "entry": data, "leaf_hash": leaf, "patient": patient, "study_uid": study})
            f.append(leaf)
            if f.size % self.sign_every == 0:
                heads.append(self._signer.sign(f.size, f.root(), now))
                last = f.size
        if last != f.size:
            heads.append(self._signer.sign(f.size, f.root(), now))
        with self._engine.begin() as conn:
            conn.execute(_INSERT_ENTRIES, rows)
            if nodes:
                conn.execute(insert(AuditNode), nodes)
            conn.execute(
                _INSERT_HEADS,
                [{"size": h.size, "root": h.root, "timestamp": h.timestamp, "signature": h.signature,
                  "key_id": h.key_id} for h in heads],
            )
        f.on_node = None
        self._frontier = f
        self._last_head = f.size
        for n in nodes:
            self.reader.nodes[(n["level"], n["idx"])] = n["hash"]
        return heads[-1]

    # --- heads and proofs (read side, shared with readers that hold no key) ---------------

    def latest_head(self) -> SignedHead | None:
        return self.reader.latest_head()

    def head(self, size: int) -> SignedHead | None:
        return self.reader.head(size)

    def entry(self, index: int) -> bytes | None:
        return self.reader.entry(index)

    def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        return self.reader.inclusion_proof(index, size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self.reader.consistency_proof(first, second, limit=self.size)

__all__ = ["AuditLog", "AuditUnavailable", "InclusionProof", "NODE_LEVEL", "RETENTION_DAYS_DEFAULT"]
