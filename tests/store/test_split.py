import os
from pathlib import Path

import pytest

from safepacs.store.blobs import BlobNotFound, LocalStore, new_names, open_store
from safepacs.store.split import SplitError, SplitStore, open_split, split_url


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
