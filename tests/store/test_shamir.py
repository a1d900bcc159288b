import itertools
import os
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safepacs.store import shamir
from safepacs.store.shamir import Share


def test_field_is_the_aes_field():
    assert shamir.mul(0x57, 0x83) == 0xC1  # FIPS-197 section 4.2 worked example
    assert shamir.mul(0x57, 0x13) == 0xFE
    for a in range(1, 256):
        assert shamir.mul(a, shamir.div(1, a)) == 1


@given(st.binary(min_size=1, max_size=48), st.integers(1, 6), st.integers(0, 4), st.randoms())
@settings(max_examples=80, deadline=None)
def test_any_k_shares_rebuild_the_secret(secret, k, extra, rnd):
    m = k + extra
    shares = shamir.split(secret, k, m)
    assert [s.x for s in shares] == list(range(1, m + 1))
    assert shamir.combine(rnd.sample(shares, k), k) == secret


def test_every_3_of_5_subset_rebuilds_a_data_key():
    key = os.urandom(32)
    shares = shamir.split(key, 3, 5)
    for subset in itertools.combinations(shares, 3):
        assert shamir.combine(list(subset), 3) == key


def test_k_minus_1_shares_are_refused():
    shares = shamir.split(os.urandom(32), 3, 5)
    with pytest.raises(shamir.ShamirError, match="2 shares given, 3 needed"):
        shamir.combine(shares[:2], 3)
    with pytest.raises(shamir.ShamirError):  # a repeated share does not count twice
        shamir.combine([shares[0], shares[0], shares[1]], 3)


def test_k_minus_1_shares_say_nothing_about_the_secret():
    # with shares 1 and 2 fixed, every candidate third share gives a different secret byte:
    # all 256 values of the secret stay equally possible
    shares = shamir.split(b"\x42", 3, 3)
    seen = Counter(
        shamir.combine([shares[0], shares[1], Share(3, bytes([y]))], 3) for y in range(256)
    )
    assert len(seen) == 256


def test_shares_are_random_each_time():
    key = os.urandom(32)
    assert shamir.split(key, 3, 5)[0] != shamir.split(key, 3, 5)[0]


def test_share_bytes_round_trip_and_malformed():
    share = shamir.split(b"secret", 2, 3)[1]
    assert Share.from_bytes(share.to_bytes()) == share
    with pytest.raises(shamir.ShamirError):
        Share.from_bytes(b"\x00abc")
    with pytest.raises(shamir.ShamirError):
        shamir.split(b"x", 4, 3)
