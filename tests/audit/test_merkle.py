"""RFC 6962 hashing and proofs, against the transparency-dev reference vectors and a naive
recursive implementation written straight from the RFC's definitions."""

from __future__ import annotations

import hashlib
import random

import pytest

from safepacs.audit import merkle

# transparency-dev/merkle testonly/reference_test.go (the Certificate Transparency reference
# vectors): the leaves, and the roots of the first n leaves, n = 1..8.
LEAVES = [bytes.fromhex(x) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (index, size, proof)
    (0, 1, ""),
    (0, 2, "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
    (1, 2, "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    (2, 3, "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    (1, 5, "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
           "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
           "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    (0, 8, "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
           "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
           "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    (5, 8, "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"
           "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"
           "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
]
CONSISTENCY = [  # (first, second, proof)
    (1, 1, ""),
    (1, 8, "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
           "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
           "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    (2, 5, "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
           "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    (6, 8, "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"
           "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"
           "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
]


def split_hex(proof: str) -> list[bytes]:
    return [bytes.fromhex(proof[i:i + 64]) for i in range(0, len(proof), 64)]


# --- a naive implementation, recursive as RFC 6962 section 2.1 writes it ------------------

def naive_mth(entries: list[bytes]) -> bytes:
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(entries[:k]) + naive_mth(entries[k:])).digest()


def naive_path(m: int, entries: list[bytes]) -> list[bytes]:
    n = len(entries)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return naive_path(m, entries[:k]) + [naive_mth(entries[k:])]
    return naive_path(m - k, entries[k:]) + [naive_mth(entries[:k])]


def naive_subproof(m: int, entries: list[bytes], b: bool) -> list[bytes]:
    n = len(entries)
    if m == n:
        return [] if b else [naive_mth(entries)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return naive_subproof(m, entries[:k], b) + [naive_mth(entries[k:])]
    return naive_subproof(m - k, entries[k:], False) + [naive_mth(entries[:k])]


def naive_consistency(m: int, entries: list[bytes]) -> list[bytes]:
    return [] if m in (0, len(entries)) else naive_subproof(m, entries, True)


# --- the reference vectors, each also checked against the naive implementation --------------

@pytest.mark.parametrize("n", range(1, 9))
def test_reference_roots(n):
    assert naive_mth(LEAVES[:n]).hex() == ROOTS[n - 1]
    assert merkle.root([merkle.leaf_hash(e) for e in LEAVES[:n]]).hex() == ROOTS[n - 1]


def test_empty_tree_root_is_hash_of_nothing():
    assert merkle.root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_reference_inclusion_proofs(index, size, proof):
    want = split_hex(proof)
    assert naive_path(index, LEAVES[:size]) == want
    leaves = [merkle.leaf_hash(e) for e in LEAVES[:size]]
    assert merkle.inclusion_proof(index, size, merkle.subtree_of(leaves)) == want
    assert merkle.verify_inclusion(index, size, leaves[index], want, bytes.fromhex(ROOTS[size - 1]))


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY)
def test_reference_consistency_proofs(first, second, proof):
    want = split_hex(proof)
    assert naive_consistency(first, LEAVES[:second]) == want
    leaves = [merkle.leaf_hash(e) for e in LEAVES[:second]]
    assert merkle.consistency_proof(first, second, merkle.subtree_of(leaves)) == want
    assert merkle.verify_consistency(
        first, second, bytes.fromhex(ROOTS[first - 1]), bytes.fromhex(ROOTS[second - 1]), want
    )


# --- our own: every pair up to 40 leaves, against the naive implementation -----------------

ENTRIES = [random.Random(7).randbytes(i % 13) + bytes([i]) for i in range(40)]
HASHES = [merkle.leaf_hash(e) for e in ENTRIES]


def test_every_inclusion_proof_up_to_40_leaves_matches_naive_and_verifies():
    for size in range(1, 41):
        r = naive_mth(ENTRIES[:size])
        assert merkle.root(HASHES[:size]) == r
        for i in range(size):
            proof = merkle.inclusion_proof(i, size, merkle.subtree_of(HASHES))
            assert proof == naive_path(i, ENTRIES[:size])
            assert len(proof) == merkle.inclusion_proof_size(i, size)
            assert merkle.verify_inclusion(i, size, HASHES[i], proof, r)


def test_every_consistency_proof_up_to_40_leaves_matches_naive_and_verifies():
    for second in range(1, 41):
        r2 = naive_mth(ENTRIES[:second])
        for first in range(1, second + 1):
            proof = merkle.consistency_proof(first, second, merkle.subtree_of(HASHES))
            assert proof == naive_consistency(first, ENTRIES[:second])
            assert merkle.verify_consistency(first, second, naive_mth(ENTRIES[:first]), r2, proof)


def flips(proof: list[bytes]):
    for i, p in enumerate(proof):
        for byte in (0, 17, 31):
            bad = bytearray(p)
            bad[byte] ^= 0x01
            yield proof[:i] + [bytes(bad)] + proof[i + 1:]


def test_inclusion_fails_when_any_byte_changes():
    size, i = 13, 6
    proof = merkle.inclusion_proof(i, size, merkle.subtree_of(HASHES))
    r = merkle.root(HASHES[:size])
    for bad in flips(proof):
        assert not merkle.verify_inclusion(i, size, HASHES[i], bad, r)
    assert not merkle.verify_inclusion(i, size, merkle.leaf_hash(ENTRIES[i] + b"x"), proof, r)
    assert not merkle.verify_inclusion(i + 1, size, HASHES[i], proof, r)
    assert not merkle.verify_inclusion(i, 7, HASHES[i], proof, r)  # another tree shape
    assert not merkle.verify_inclusion(i, size, HASHES[i], proof[:-1], r)
    assert not merkle.verify_inclusion(i, size, HASHES[i], proof + [r], r)


def test_consistency_fails_when_any_byte_changes():
    first, second = 7, 29
    proof = merkle.consistency_proof(first, second, merkle.subtree_of(HASHES))
    r1, r2 = merkle.root(HASHES[:first]), merkle.root(HASHES[:second])
    for bad in flips(proof):
        assert not merkle.verify_consistency(first, second, r1, r2, bad)
    wrong = merkle.root(HASHES[1:first + 1])
    assert not merkle.verify_consistency(first, second, wrong, r2, proof)
    assert not merkle.verify_consistency(first, second, r1, wrong, proof)
    assert not merkle.verify_consistency(first, 40, r1, r2, proof)  # another tree shape
    assert not merkle.verify_consistency(first, second, r1, r2, proof[:-1])


def test_frontier_reports_every_perfect_subtree_and_rebuilds():
    seen = {}
    f = merkle.Frontier(on_node=lambda level, idx, h: seen.__setitem__((level, idx), h))
    for h in HASHES[:37]:
        f.append(h)
    assert seen[(5, 0)] == merkle.root(HASHES[:32])
    assert seen[(2, 8)] == merkle.root(HASHES[32:36])
    again = merkle.Frontier.from_subtrees(37, f.subtrees())
    assert again.root() == naive_mth(ENTRIES[:37])


def test_proof_size_among_ten_million_is_under_a_kilobyte():
    n = 10_000_000
    worst = max(merkle.inclusion_proof_size(i, n) for i in (0, 1, n // 2, n - 2, n - 1, 8_388_607, 8_388_608))
    assert worst * merkle.HASH_SIZE < 1024
    assert merkle.consistency_proof_size(n - 12345, n) * merkle.HASH_SIZE < 1024
