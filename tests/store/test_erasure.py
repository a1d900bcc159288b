import itertools
import os
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safepacs.store import erasure, isal

needs_isal = pytest.mark.skipif(not isal.available(), reason="Intel ISA-L (libisal2) not installed")


def zfec_only():
    """Code with zfec alone, as on a machine without ISA-L."""
    return mock.patch.object(erasure, "_isal_tables", lambda k, n: None)


@given(st.binary(max_size=3000), st.integers(1, 6), st.integers(0, 4), st.randoms())
@settings(max_examples=60, deadline=None)
def test_any_k_shards_give_the_data_back(data, k, extra, rnd):
    n = k + extra
    shards = erasure.encode(data, k, n)
    assert len(shards) == n and len({len(s) for s in shards}) == 1
    chosen = rnd.sample(range(n), k)
    assert erasure.decode({i: shards[i] for i in chosen}, k, n, len(data)) == data


def test_every_3_of_5_subset_decodes():
    data = os.urandom(10_001)
    shards = erasure.encode(data, 3, 5)
    for subset in itertools.combinations(range(5), 3):
        assert erasure.decode({i: shards[i] for i in subset}, 3, 5, len(data)) == data


def test_fewer_than_k_shards_is_an_error():
    shards = erasure.encode(b"x" * 100, 3, 5)
    with pytest.raises(erasure.ErasureError, match="only 2 shards"):
        erasure.decode({0: shards[0], 4: shards[4]}, 3, 5, 100)


def test_parameters_out_of_range_are_refused():
    with pytest.raises(erasure.ErasureError):
        erasure.encode(b"x", 4, 3)
    with pytest.raises(erasure.ErasureError):
        erasure.encode(b"x", 0, 3)


def test_striped_coding_of_big_shards_matches_and_decodes(monkeypatch):
    data = os.urandom(3 * erasure.STRIPE + 12_345)  # shards of just over one stripe
    with zfec_only():
        whole = [bytes(s) for s in erasure.encode(data, 3, 5)]
        monkeypatch.setattr(erasure, "STRIPE", 4096)  # many stripes, odd last one
        striped = [bytes(s) for s in erasure.encode(data, 3, 5)]
        assert striped == whole
        for subset in itertools.combinations(range(5), 3):
            assert erasure.decode({i: striped[i] for i in subset}, 3, 5, len(data)) == data


def test_coefficients_are_zfecs_parity_of_unit_messages():
    coef = erasure.coefficients(3, 5)
    assert len(coef) == 6
    data = [os.urandom(1) for _ in range(3)]
    with zfec_only():
        parity = erasure.encode(b"".join(data), 3, 5)[3:]
    for r in range(2):  # parity byte = sum over GF(2^8) of coefficient * data byte
        assert parity[r][0] == _gf_dot(coef[3 * r : 3 * r + 3], [d[0] for d in data])


def _gf_mul(a: int, b: int) -> int:
    out = 0
    while b:
        if b & 1:
            out ^= a
        a = (a << 1) ^ (0x11D if a & 0x80 else 0)
        b >>= 1
    return out


def _gf_dot(coef: bytes, values: list[int]) -> int:
    out = 0
    for c, v in zip(coef, values, strict=True):
        out ^= _gf_mul(c, v)
    return out


@needs_isal
@pytest.mark.parametrize(("k", "n"), [(1, 2), (2, 3), (3, 5), (4, 9), (10, 14)])
@pytest.mark.parametrize("size", [1, 4095, 100_003])
def test_isal_writes_zfecs_shards_byte_for_byte_and_either_decodes_the_other(k, n, size):
    data = os.urandom(size)
    fast = [bytes(s) for s in erasure.encode(data, k, n)]
    with zfec_only():
        slow = [bytes(s) for s in erasure.encode(data, k, n)]
    assert fast == slow  # the stored format does not depend on the machine that wrote it
    for subset in list(itertools.combinations(range(n), k))[:40]:
        chosen = {i: fast[i] for i in subset}
        assert erasure.decode(chosen, k, n, size) == data
        with zfec_only():
            assert erasure.decode(chosen, k, n, size) == data


@needs_isal
def test_isal_is_not_used_when_its_parity_would_differ_from_zfecs(monkeypatch):
    real_apply = isal.apply

    def wrong(tbls, rows, inputs, size):  # type: ignore[no-untyped-def]
        out = real_apply(tbls, rows, inputs, size)
        out[0][size // 2] ^= 1
        return out

    erasure._isal_tables.cache_clear()
    monkeypatch.setattr(isal, "apply", wrong)
    try:
        assert erasure._isal_tables(3, 5) is None
        data = os.urandom(30_000)
        shards = erasure.encode(data, 3, 5)  # zfec did it: still right
        assert erasure.decode({0: shards[0], 3: shards[3], 4: shards[4]}, 3, 5, len(data)) == data
    finally:
        erasure._isal_tables.cache_clear()
