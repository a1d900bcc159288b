import pytest

from safepacs.store import custodians
from safepacs.store.custodians import CustodianError

PASS = "correct horse battery staple"


@pytest.fixture(scope="module")
def alice():
    return custodians.new_keys(PASS)


@pytest.fixture(scope="module")
def bob():
    return custodians.new_keys("another long passphrase")


def test_share_opens_for_its_custodian_only(alice, bob):
    env = custodians.encrypt_share(alice.public_key, b"\x07share-bytes", b"study:1.2.3")
    assert b"share-bytes" not in env
    assert custodians.decrypt_share(custodians.unlock(alice, PASS), env, b"study:1.2.3") == b"\x07share-bytes"
    with pytest.raises(CustodianError, match="does not open"):
        custodians.decrypt_share(custodians.unlock(bob, "another long passphrase"), env, b"study:1.2.3")


def test_share_is_bound_to_its_study(alice):
    env = custodians.encrypt_share(alice.public_key, b"s", b"study:1.2.3")
    with pytest.raises(CustodianError):
        custodians.decrypt_share(custodians.unlock(alice, PASS), env, b"study:1.2.4")


def test_wrong_passphrase_is_refused(alice):
    with pytest.raises(CustodianError, match="wrong custodian passphrase"):
        custodians.unlock(alice, PASS + "!")


def test_private_key_is_not_stored_in_clear(alice):
    private = custodians.unlock(alice, PASS)
    from cryptography.hazmat.primitives import serialization

    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert raw not in alice.protected_private


def test_short_passphrase_is_refused():
    with pytest.raises(CustodianError, match="at least"):
        custodians.new_keys("short")


def test_tampered_envelope_fails(alice):
    env = bytearray(custodians.encrypt_share(alice.public_key, b"s" * 33, b"c"))
    env[-1] ^= 1
    with pytest.raises(CustodianError):
        custodians.decrypt_share(custodians.unlock(alice, PASS), bytes(env), b"c")
