import os

import pytest

from safepacs.archive import Archive
from safepacs.audit.events import MemorySink
from safepacs.retention.decommission import decommission_data_dir, decommission_node
from safepacs.store.blobs import LocalStore, StoreError, new_names
from safepacs.store.split import SplitError, SplitStore
from tests.archive.objects import ct_bytes
from tests.retention.stored import read_plain


def test_decommissioned_data_dir_has_no_key_that_opens_any_blob(archive, archive_dir, database_url):
    arch, _ = archive
    stored = arch.ingest(ct_bytes(), source="test")
    assert read_plain(arch, stored.study_uid, stored.sop_instance_uid)
    sink = MemorySink()
    proof = decommission_data_dir(arch, audit=sink)
    assert proof.proven and proof.blobs_checked == 2 and proof.kek_file_erased
    assert len(proof.keys_destroyed) == 1
    assert not (archive_dir / "keys" / "kek.key").exists()
    assert any(e.route == "decommission:data-dir" for e in sink.events)
    with pytest.raises(Exception):  # noqa: B017 - no KEK, no keys: it never opens again
        Archive.open(archive_dir, database_url=database_url)


def test_decommissioned_node_is_wiped_after_its_shards_moved(tmp_path):
    split = SplitStore([LocalStore(tmp_path / f"n{i}") for i in range(5)], 3)
    data = {}
    for _ in range(3):
        (name,) = new_names("obj")
        data[name] = os.urandom(5000)
        split.put(name, data[name])
    old = split.nodes[2]
    proof = decommission_node(split, 2, LocalStore(tmp_path / "n2-new"))
    assert proof.proven and proof.blobs == 3 and proof.repaired == 3
    assert list(old.names()) == []
    assert split.scrub() == {}
    for name, blob in data.items():  # still any two nodes may fail
        split.nodes[0].delete(name)
        split.nodes[4].delete(name)
        assert split.get(name) == blob


def _filled(tmp_path, n: int = 5, k: int = 3, blobs: int = 3) -> tuple[SplitStore, dict[str, bytes]]:
    split = SplitStore([LocalStore(tmp_path / f"n{i}") for i in range(n)], k)
    data = {}
    for _ in range(blobs):
        (name,) = new_names("obj")
        data[name] = os.urandom(5000)
        split.put(name, data[name])
    return split, data


@pytest.mark.parametrize("target", ["itself", "another node"])
def test_a_replacement_that_is_already_a_node_is_refused_and_nothing_moves(tmp_path, target):
    """Rebuilding into a current node would overwrite that node's own shards, and wiping
    the old node would then wipe the "new" one: refused before anything changes."""
    split, data = _filled(tmp_path)
    before = {i: {n: bytes(node.get(n)) for n in node.names()} for i, node in enumerate(split.nodes)}
    same = tmp_path / ("n2" if target == "itself" else "n4")
    with pytest.raises(SplitError, match="already a node"):
        decommission_node(split, 2, LocalStore(same / ".." / same.name))  # another spelling of it
    assert {i: {n: bytes(node.get(n)) for n in node.names()} for i, node in enumerate(split.nodes)} == before
    with pytest.raises(SplitError, match="node must be"):
        decommission_node(split, 5, LocalStore(tmp_path / "n5-new"))


def test_two_nodes_in_one_place_are_refused(tmp_path):
    with pytest.raises(StoreError, match="same folder or bucket"):
        SplitStore([LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b"), LocalStore(tmp_path / "a")], 2)


def test_a_node_is_kept_when_a_blob_cannot_be_rebuilt_without_it(tmp_path):
    """k=3 of 5: with two other nodes' shards of a blob gone, the old node's shard is one of
    the last three.  Decommissioning heals first while it still counts; when even that
    cannot help (three gone), the old node is not wiped."""
    split, data = _filled(tmp_path)
    healable, lost = list(data)[:2]
    for node in (0, 1):
        split.nodes[node].delete(healable)
    for node in (0, 1, 3):
        split.nodes[node].delete(lost)
    old = split.nodes[2]
    proof = decommission_node(split, 2, LocalStore(tmp_path / "n2-new"))
    assert proof.failed == 1 and not proof.proven
    assert lost in set(old.names()) and proof.left_on_node == len(data)
    assert split.get(healable) == data[healable]

