"""Decommissioning: a whole data dir, or one storage node of a split store.

A data dir: every key that could open any of its blobs is crypto-erased (every study data
key, every sealed study's custodian shares, the site keys, and the KEK file itself,
overwritten then unlinked), and then every blob is tried against every key that remains
anywhere in the index: the proof is that none opens.  The blobs themselves may then be
left to the disk's disposal process: they are ciphertext under keys that no longer exist.

A node of a split store: its shards are first rebuilt onto a replacement node (so nothing is
lost), then deleted from the old node; the proof is that the old node never held more than
one shard of any blob, fewer than the k needed, and now holds none.  Keys are not erased
(the data lives on, on the other nodes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, select

from safepacs.audit import events as ev
from safepacs.audit.events import AuditEvent, AuditSink, LogSink
from safepacs.index.models import DataKey, Instance, SiteKey
from safepacs.retention.kek import _kek_path
from safepacs.retention.models import SealedShare, SealedStudy
from safepacs.store import crypto
from safepacs.store.blobs import BlobStore, StoreError
from safepacs.store.sealing import key_fingerprint
from safepacs.store.split import SplitError, SplitStore


@dataclass
class DataDirProof:
    keys_destroyed: list[str] = field(default_factory=list)  # fingerprints
    kek_file_erased: bool = False
    kek_note: str = ""
    blobs_checked: int = 0
    keys_remaining: int = 0
    blobs_opened: int = 0  # must be 0

    @property
    def proven(self) -> bool:
        return self.blobs_opened == 0 and self.keys_remaining == 0


def _erase_file(path: Path) -> bool:
    """Overwrite with random bytes, sync, unlink (best effort on copy-on-write media)."""
    if not path.exists():
        return False
    size = max(path.stat().st_size, 64)
    with open(path, "r+b") as fh:
        fh.write(os.urandom(size))
        fh.flush()
        os.fsync(fh.fileno())
    path.unlink()
    return True


def decommission_data_dir(archive: object, *, audit: AuditSink | None = None) -> DataDirProof:
    """Crypto-erase every key of ``archive`` and prove no remaining key opens its blobs.
    The archive is closed afterwards and can never be opened again."""
    a = archive
    sink = audit or LogSink()
    proof = DataDirProof()
    engine = a._engine  # type: ignore[attr-defined]
    kek = a._kek  # type: ignore[attr-defined]
    with engine.connect() as conn:
        contexts = {}
        for sop, obj, dlt in conn.execute(select(Instance.sop_uid, Instance.object_blob, Instance.delta_blob)):
            contexts[obj] = b"object\x00" + sop.encode()
            contexts[dlt] = b"delta\x00" + sop.encode()
        for uid, wrapped in conn.execute(select(DataKey.study_uid, DataKey.wrapped)):
            proof.keys_destroyed.append(key_fingerprint(kek.unwrap(wrapped, b"study:" + uid.encode())))
        proof.keys_destroyed += list(conn.scalars(select(SealedStudy.key_fingerprint)))
    with a._writer.begin() as conn:  # type: ignore[attr-defined]
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA secure_delete=ON")
        for table in (DataKey, SealedShare, SealedStudy, SiteKey):
            conn.execute(delete(table))
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    path = _kek_path(a.settings.kek, a.settings.data_dir)  # type: ignore[attr-defined]
    if path is not None:
        proof.kek_file_erased = _erase_file(path)
    else:
        proof.kek_note = "KEK from the environment: destroy it where it is kept"
    store: BlobStore = a._store  # type: ignore[attr-defined]
    a.close()  # type: ignore[attr-defined]  # also drops the in-memory key cache
    # the proof: every key that remains anywhere in the index, tried on every blob
    with engine.connect() as conn:
        remaining_wrapped = [(w, b"study:" + u.encode()) for u, w in conn.execute(select(DataKey.study_uid, DataKey.wrapped))]
        remaining_wrapped += [(w, b"site:" + n.encode()) for n, w in conn.execute(select(SiteKey.name, SiteKey.wrapped))]
    remaining: list[bytes] = []
    if path is not None and path.exists():  # the KEK survived (it cannot, above): use it
        live = crypto.read_kek_file(path)
        for wrapped, ctx in remaining_wrapped:
            try:
                remaining.append(live.unwrap(wrapped, ctx))
            except crypto.CryptoError:
                continue
    proof.keys_remaining = len(remaining_wrapped)
    for name in store.names():
        proof.blobs_checked += 1
        try:
            blob = store.get(name)
        except StoreError:
            continue
        for key in remaining:
            try:
                crypto.unseal(key, blob, contexts.get(name, b""))
                proof.blobs_opened += 1
                break
            except crypto.TamperedError:
                continue
    sink.record(AuditEvent(ev.APPLICATION_ACTIVITY, ev.DELETE, route="decommission:data-dir", detail={
        "keys_destroyed": len(proof.keys_destroyed), "kek_file_erased": proof.kek_file_erased,
        "blobs_checked": proof.blobs_checked, "keys_remaining": proof.keys_remaining,
        "blobs_opened": proof.blobs_opened}))
    return proof


@dataclass
class NodeProof:
    blobs: int = 0
    repaired: int = 0
    max_shards_on_node: int = 0  # per blob, before wiping; always 1 < k
    k: int = 0
    left_on_node: int = 0  # after wiping; must be 0
    #: blobs whose shard could not be rebuilt on the replacement: the old node is then kept
    failed: int = 0

    @property
    def proven(self) -> bool:
        return self.max_shards_on_node < self.k and self.left_on_node == 0 and not self.failed


def decommission_node(split: SplitStore, index: int, replacement: BlobStore, *, audit: AuditSink | None = None) -> NodeProof:
    """Move node ``index``'s shards to ``replacement`` (rebuilt from the others and
    verified), then wipe the old node; if any blob cannot be rebuilt, the old node is kept
    whole (``failed``, not proven)."""
    names = list(split.names())
    for name in names:  # heal the other nodes first, while the old node's shards still count
        try:
            split.repair(name)
        except SplitError:
            pass  # counted below, when its shard cannot be rebuilt either
    old = split.replace_node(index, replacement)
    proof = NodeProof(k=split.k)
    proof.max_shards_on_node = 1 if any(True for _ in old.names()) else 0
    for name in names:
        proof.blobs += 1
        try:
            if split.repair(name):
                proof.repaired += 1
        except SplitError:
            proof.failed += 1
    if not proof.failed:  # otherwise the old node's shard may be all that keeps a blob readable
        for name in list(old.names()):
            old.delete(name)
    proof.left_on_node = sum(1 for _ in old.names())
    (audit or LogSink()).record(AuditEvent(ev.APPLICATION_ACTIVITY, ev.DELETE, route="decommission:node", detail={
        "node": index, "blobs": proof.blobs, "repaired": proof.repaired, "failed": proof.failed,
        "left_on_node": proof.left_on_node}))
    return proof
