import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safepacs.store import erasure


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
    whole = [bytes(s) for s in erasure.encode(data, 3, 5)]
    monkeypatch.setattr(erasure, "STRIPE", 4096)  # many stripes, odd last one
    striped = [bytes(s) for s in erasure.encode(data, 3, 5)]
    assert striped == whole
    for subset in itertools.combinations(range(5), 3):
        assert erasure.decode({i: striped[i] for i in subset}, 3, 5, len(data)) == data
