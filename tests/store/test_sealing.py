"""Sealed studies: k-1 custodians open nothing, k do, every step is audited; sealed blobs
survive the loss of n-k nodes."""

from __future__ import annotations

import pytest

from safepacs.audit.events import MemorySink
from safepacs.store.blobs import LocalStore
from safepacs.store.custodians import CustodianError
from safepacs.store.sealing import Sealed, Vault
from safepacs.store.split import SplitError, SplitStore
from tests.archive.objects import ct_bytes
from tests.retention.stored import read_plain

CUSTODIANS = {f"custodian-{i}": f"passphrase number {i} is long" for i in range(5)}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sealed_setup(archive, tmp_path):
    arch, _ = archive
    sink, clock = MemorySink(), Clock()
    nodes = SplitStore([LocalStore(tmp_path / f"node{i}") for i in range(5)], 3)
    vault = Vault(arch._engine, nodes, audit=sink, clock=clock, window_s=60)
    for name, phrase in CUSTODIANS.items():
        vault.add_custodian(name, phrase, by="secadmin")
    stored = [arch.ingest(ct_bytes(f"1.2.826.0.1.3680043.99.1.{i}", pixel=i), source="test") for i in (3, 4)]
    other = arch.ingest(ct_bytes("1.2.826.0.1.3680043.99.2.3", study="1.2.826.0.1.3680043.99.2",
                                 series="1.2.826.0.1.3680043.99.2.2"), source="test")
    study = stored[0].study_uid
    originals = {s.sop_instance_uid: read_plain(arch, study, s.sop_instance_uid) for s in stored}
    moved = vault.seal_study(arch, study, list(CUSTODIANS), 3, by="secadmin")
    assert moved == 4  # two objects, two identity deltas
    arch.attach_vault(vault)
    return arch, vault, sink, clock, study, originals, other


def test_sealed_study_does_not_open_without_custodians(sealed_setup):
    arch, vault, sink, clock, study, originals, other = sealed_setup
    for sop in originals:
        with pytest.raises(Sealed):
            read_plain(arch, study, sop)
    # other studies are unaffected
    assert read_plain(arch, other.study_uid, other.sop_instance_uid)
    # no wrapped key, no plaintext blob in the primary store
    from safepacs.index.models import DataKey

    with arch._engine.connect() as conn:
        assert conn.execute(DataKey.__table__.select().where(DataKey.study_uid == study)).first() is None


def test_k_minus_1_approvals_open_nothing_and_k_do_all_audited(sealed_setup):
    arch, vault, sink, clock, study, originals, _ = sealed_setup
    names = list(CUSTODIANS)
    assert vault.approve(study, names[0], CUSTODIANS[names[0]], purpose="court order 12") == 1
    assert vault.approve(study, names[3], CUSTODIANS[names[3]], purpose="court order 12") == 2
    with pytest.raises(Sealed):
        read_plain(arch, study, next(iter(originals)))
    # a wrong passphrase is refused, audited, and does not count
    with pytest.raises(CustodianError):
        vault.approve(study, names[1], "not the passphrase at all")
    with pytest.raises(Sealed):
        vault.key(study)
    # the same custodian twice is still two approvals
    assert vault.approve(study, names[0], CUSTODIANS[names[0]]) == 2
    with pytest.raises(Sealed):
        vault.key(study)
    vault.approve(study, names[4], CUSTODIANS[names[4]], purpose="court order 12")
    for sop, data in originals.items():
        assert read_plain(arch, study, sop) == data
    routes = [(e.route, e.outcome, e.user) for e in sink.events if e.study_uid == study]
    approvals = [r for r in routes if r[0] == "sealing:approve"]
    assert [a[2] for a in approvals if a[1] == 0] == [names[0], names[3], names[0], names[4]]
    assert [a[2] for a in approvals if a[1] != 0] == [names[1]]
    assert ("sealing:open", 0, "") in routes
    # the window closes with time: the key is gone again
    clock.now += 61
    with pytest.raises(Sealed):
        read_plain(arch, study, next(iter(originals)))
    assert any(e.route == "sealing:close" for e in sink.events)


def test_sealed_blobs_survive_two_lost_nodes_and_fail_closed_at_three(sealed_setup):
    arch, vault, sink, clock, study, originals, _ = sealed_setup
    names = list(CUSTODIANS)
    for name in names[:3]:
        vault.approve(study, name, CUSTODIANS[name])
    nodes = vault.store.nodes
    blobs = [n for n in nodes[0].names()]
    for blob in blobs:
        nodes[1].delete(blob)
        nodes[3].delete(blob)
    for sop, data in originals.items():
        assert read_plain(arch, study, sop) == data
    for blob in blobs:
        nodes[4].delete(blob)
    with pytest.raises(SplitError, match="too few intact shards"):  # fail closed, never garbage
        read_plain(arch, study, next(iter(originals)))


def test_no_single_node_or_custodian_share_holds_the_key(sealed_setup):
    arch, vault, sink, clock, study, originals, _ = sealed_setup
    from safepacs.retention.models import SealedShare

    with arch._engine.connect() as conn:
        envs = [r.envelope for r in conn.execute(SealedShare.__table__.select().where(SealedShare.study_uid == study))]
    assert len(envs) == 5 and len(set(envs)) == 5


def test_sealing_a_vip_patient_seals_every_study_of_theirs(archive, tmp_path):
    arch, _ = archive
    vault = Vault(arch._engine, SplitStore([LocalStore(tmp_path / f"v{i}") for i in range(3)], 2), audit=MemorySink())
    for name in ("a-custodian", "b-custodian"):
        vault.add_custodian(name, "a long enough passphrase")
    s1 = arch.ingest(ct_bytes("1.2.826.0.1.3680043.99.5.3", study="1.2.826.0.1.3680043.99.5",
                              series="1.2.826.0.1.3680043.99.5.2", patient_id="VIP1"), source="t")
    s2 = arch.ingest(ct_bytes("1.2.826.0.1.3680043.99.6.3", study="1.2.826.0.1.3680043.99.6",
                              series="1.2.826.0.1.3680043.99.6.2", patient_id="VIP1"), source="t")
    from safepacs.index.models import Patient

    with arch._engine.connect() as conn:
        (pseudonym,) = conn.execute(Patient.__table__.select().with_only_columns(Patient.patient_id)).first()
    assert vault.seal_patient(arch, pseudonym, ["a-custodian", "b-custodian"], 2) == [s1.study_uid, s2.study_uid]
    arch.attach_vault(vault)
    for s in (s1, s2):
        with pytest.raises(Sealed):
            read_plain(arch, s.study_uid, s.sop_instance_uid)
