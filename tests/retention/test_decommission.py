import os

import pytest

from safepacs.archive import Archive
from safepacs.audit.events import MemorySink
from safepacs.retention.decommission import decommission_data_dir, decommission_node
from safepacs.store.blobs import LocalStore, new_names
from safepacs.store.split import SplitStore
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
