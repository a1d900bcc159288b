import hashlib
import os
from pathlib import Path

import blake3
import pytest

from safepacs.store import erasure
from safepacs.store.blobs import BlobNotFound, LocalStore, new_names, open_store
from safepacs.store.split import (
    MAGIC_V1,
    MAGIC_V2,
    SplitError,
    SplitStore,
    open_split,
    pack_shards,
    split_url,
)


def nodes(root: Path, n: int = 5) -> list[LocalStore]:
    return [LocalStore(root / f"node{i}") for i in range(n)]


def corrupt(store: LocalStore, name: str) -> None:
    path = store.root / name
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x40  # one silent bit flip in the shard body
    path.unlink()
    path.write_bytes(bytes(raw))


@pytest.fixture
def split(tmp_path) -> SplitStore:
    return SplitStore(nodes(tmp_path), 3)


def test_round_trip_and_no_node_holds_the_whole_blob(split):
    data = os.urandom(100_000)
    (name,) = new_names("obj")
    split.put(name, data)
    assert split.get(name) == data
    for node in split.nodes:
        assert len(node.get(name)) < len(data) // 2  # about a third each, plus a manifest


@pytest.mark.parametrize("lost", [(0, 1), (3, 4), (1, 4), (0, 2)])
def test_two_nodes_lost_or_corrupted_still_serve_bit_for_bit(split, lost):
    data = os.urandom(50_001)
    (name,) = new_names("obj")
    split.put(name, data)
    split.nodes[lost[0]].delete(name)  # one node lost the shard
    corrupt(split.nodes[lost[1]], name)  # another one silently changed it
    assert split.get(name) == data


def test_three_nodes_gone_fails_closed_with_a_clear_error(split):
    data = os.urandom(9_000)
    (name,) = new_names("obj")
    split.put(name, data)
    split.nodes[0].delete(name)
    corrupt(split.nodes[2], name)
    corrupt(split.nodes[4], name)
    with pytest.raises(SplitError, match="too few intact shards"):
        split.get(name)
    with pytest.raises(SplitError):
        split.repair(name)


def test_missing_everywhere_is_not_found(split):
    with pytest.raises(BlobNotFound):
        split.get("ab/" + "0" * 32 + ".obj")


def test_repair_onto_a_replacement_node_restores_full_redundancy(tmp_path, split):
    blobs = {}
    for _ in range(4):
        (name,) = new_names("obj")
        blobs[name] = os.urandom(20_000)
        split.put(name, blobs[name])
    # node 1 burns down: replaced by an empty folder; node 3 silently rots one shard
    replacement = LocalStore(tmp_path / "node1-new")
    split.nodes[1] = replacement
    victim = sorted(blobs)[0]
    corrupt(split.nodes[3], victim)
    report = split.scrub()
    assert set(report) == set(blobs)
    assert report[victim] == [1, 3]
    for name in blobs:
        split.repair(name)
    assert split.scrub() == {}
    # full redundancy: any two other nodes may now fail
    for name, data in blobs.items():
        for node in (0, 4):
            split.nodes[node].delete(name)
        assert split.get(name) == data


def test_scrub_finds_silent_corruption(split):
    (name,) = new_names("obj")
    split.put(name, b"y" * 3000)
    assert split.scrub() == {}
    corrupt(split.nodes[2], name)
    assert split.scrub() == {name: [2]}


def test_delete_removes_every_shard(split):
    (name,) = new_names("obj")
    split.put(name, b"z" * 100)
    split.delete(name)
    assert list(split.names()) == []


def test_split_url_opens_through_open_store(tmp_path):
    urls = [f"file://{tmp_path / f'n{i}'}" for i in range(5)]
    store = open_store(split_url(3, urls))
    assert isinstance(store, SplitStore) and store.k == 3 and store.n == 5
    (name,) = new_names("obj")
    store.put(name, b"abc" * 1000)
    assert open_split(split_url(3, urls)).get(name) == b"abc" * 1000


def test_split_over_s3_and_local_mix(tmp_path, s3_url):
    s3 = open_store(s3_url)
    s3.ensure_bucket()
    store = SplitStore([*nodes(tmp_path, 4), s3], 3)
    (name,) = new_names("obj")
    data = os.urandom(30_000)
    store.put(name, data)
    store.nodes[0].delete(name)
    store.nodes[1].delete(name)
    assert store.get(name) == data


def _write_v1(split: SplitStore, name: str, data: bytes) -> None:
    """A blob as the first shard format wrote it (SHA-256 shard hashes)."""
    for node, shard in zip(split.nodes, pack_shards(data, split.k, split.n, version=1), strict=True):
        node.put(name, shard)


def test_shards_written_now_carry_blake3_hashes(split):
    data = os.urandom(40_000)
    (name,) = new_names("obj")
    split.put(name, data)
    for i, node in enumerate(split.nodes):
        raw = bytes(node.get(name))
        assert raw.startswith(MAGIC_V2)
        body = raw[-erasure.shard_size(len(data), 3) :]
        assert blake3.blake3(body).digest() in raw[: len(raw) - len(body)]
        assert i == raw[10]  # shard number in the header


def test_first_format_blobs_still_read_scrub_and_repair_in_their_own_format(split):
    data = os.urandom(70_001)
    (name,) = new_names("obj")
    _write_v1(split, name, data)
    assert split.get(name) == data
    split.nodes[1].delete(name)
    corrupt(split.nodes[3], name)
    assert split.get(name) == data
    assert split.scrub() == {name: [1, 3]}
    assert split.repair(name) == [1, 3]
    assert split.scrub() == {}
    for node in split.nodes:  # repaired shards match the surviving v1 manifests
        raw = bytes(node.get(name))
        assert raw.startswith(MAGIC_V1)
        body = raw[-erasure.shard_size(len(data), 3) :]
        assert hashlib.sha256(body).digest() in raw[: len(raw) - len(body)]


def test_a_shard_with_the_other_versions_magic_does_not_count(split):
    data = os.urandom(10_000)
    (name,) = new_names("obj")
    split.put(name, data)
    for i in (0, 1, 2):  # relabel three v2 shards as v1: their hashes no longer verify
        path = split.nodes[i].root / name
        raw = path.read_bytes()
        path.unlink()
        path.write_bytes(MAGIC_V1 + raw[len(MAGIC_V1) :])
    with pytest.raises(SplitError):
        split.get(name)


class CountingNode:
    """A node that records which blobs were read from it."""

    def __init__(self, inner: LocalStore) -> None:
        self.inner, self.reads = inner, 0

    def __getattr__(self, attr):  # type: ignore[no-untyped-def]
        return getattr(self.inner, attr)

    def get(self, name: str):  # type: ignore[no-untyped-def]
        self.reads += 1
        return self.inner.get(name)


def test_a_healthy_read_touches_only_the_k_data_shards_and_a_damaged_one_all(tmp_path):
    counted = [CountingNode(n) for n in nodes(tmp_path)]
    store = SplitStore(counted, 3)  # type: ignore[arg-type]
    data = os.urandom(60_000)
    (name,) = new_names("obj")
    store.put(name, data)
    assert store.get(name) == data
    assert [c.reads for c in counted] == [1, 1, 1, 0, 0]
    corrupt(counted[1].inner, name)
    assert store.get(name) == data  # the bad data shard sends the read to the parity shards
    assert [c.reads for c in counted][3:] == [1, 1]
