"""Envelope encryption: AES-256-GCM blobs under per-blob keys, KEKs from a file or the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from safepacs.store import crypto


@pytest.fixture
def data_key() -> bytes:
    return crypto.generate_key()


def test_sealed_blob_opens_with_its_key_and_context(data_key):
    plain = os.urandom(100_000)
    blob = crypto.seal(data_key, plain, b"object\x00" + b"2.25.1")
    assert crypto.unseal(data_key, blob, b"object\x00" + b"2.25.1") == plain
    assert plain[:64] not in blob
    assert len(blob) == crypto.sealed_size(len(plain))


def test_sealed_in_parts_equals_the_whole_message(data_key):
    parts = [b"header bytes", memoryview(os.urandom(5000))[10:4000], b"tail"]
    buf = bytearray(crypto.sealed_size(sum(len(p) for p in parts)) + 16)
    blob = bytes(crypto.seal_parts(data_key, parts, b"ctx", buf))
    assert crypto.unseal(data_key, blob, b"ctx") == b"".join(bytes(p) for p in parts)


@pytest.mark.parametrize("where", [0, 10, 30, 40, 500, -1])
def test_any_flipped_byte_fails_authentication(data_key, where):
    blob = bytearray(crypto.seal(data_key, b"x" * 1000, b"ctx"))
    blob[where] ^= 0x01
    with pytest.raises(crypto.TamperedError):
        crypto.unseal(data_key, bytes(blob), b"ctx")


def test_blob_sealed_for_another_object_or_key_fails(data_key):
    blob = crypto.seal(data_key, b"payload", b"object\x00A")
    with pytest.raises(crypto.TamperedError):
        crypto.unseal(data_key, blob, b"object\x00B")
    with pytest.raises(crypto.TamperedError):
        crypto.unseal(crypto.generate_key(), blob, b"object\x00A")
    with pytest.raises(crypto.TamperedError):
        crypto.unseal(data_key, blob[:20], b"object\x00A")


def test_every_blob_has_a_fresh_salt_and_nonce(data_key):
    heads = {crypto.seal(data_key, b"same", b"c")[8:36] for _ in range(200)}
    assert len(heads) == 200


def test_kek_file_is_created_0600_and_reloads_the_same_key(tmp_path: Path):
    kek = crypto.load_kek("file:keys/kek.key", tmp_path, create=True)
    path = tmp_path / "keys" / "kek.key"
    assert path.stat().st_mode & 0o777 == 0o600
    again = crypto.load_kek("file:keys/kek.key", tmp_path)
    wrapped = kek.wrap(b"k" * 32, b"site:deid")
    assert again.unwrap(wrapped, b"site:deid") == b"k" * 32
    assert again.key_id == kek.key_id


def test_kek_file_readable_by_others_is_refused(tmp_path: Path):
    crypto.write_kek_file(tmp_path / "kek.key")
    os.chmod(tmp_path / "kek.key", 0o644)
    with pytest.raises(crypto.CryptoError, match="0600"):
        crypto.read_kek_file(tmp_path / "kek.key")


def test_kek_from_environment(monkeypatch):
    secret = crypto.generate_key()
    monkeypatch.setenv("TEST_SAFEPACS_KEK", crypto.encode_kek(secret))
    kek = crypto.load_kek("env:TEST_SAFEPACS_KEK", Path("."))
    assert kek.key_id == crypto.LocalKek(secret).key_id
    monkeypatch.setenv("TEST_SAFEPACS_KEK", "not base64!")
    with pytest.raises(crypto.CryptoError, match="base64"):
        crypto.load_kek("env:TEST_SAFEPACS_KEK", Path("."))
    monkeypatch.delenv("TEST_SAFEPACS_KEK")
    with pytest.raises(crypto.CryptoError, match="not set"):
        crypto.load_kek("env:TEST_SAFEPACS_KEK", Path("."))


def test_wrong_kek_cannot_unwrap_and_says_so():
    wrapped = crypto.LocalKek(crypto.generate_key()).wrap(b"k" * 32, b"study:1")
    with pytest.raises(crypto.CryptoError, match="wrong KEK"):
        crypto.LocalKek(crypto.generate_key()).unwrap(wrapped, b"study:1")


def test_wrapped_key_is_bound_to_its_context():
    kek = crypto.LocalKek(crypto.generate_key())
    wrapped = kek.wrap(b"k" * 32, b"study:1")
    with pytest.raises(crypto.CryptoError):
        kek.unwrap(wrapped, b"study:2")


def test_unseal_into_writes_the_plaintext_where_the_caller_frames_it(data_key):
    plain = os.urandom(70_001)
    blob = crypto.seal(data_key, plain, b"ctx")
    assert crypto.plain_size(blob) == len(plain)
    out = bytearray(5 + len(plain) + 20)
    crypto.unseal_into(data_key, blob, b"ctx", memoryview(out)[5:])
    assert bytes(out[5 : 5 + len(plain)]) == plain
    assert out[:5] == b"\0" * 5


@pytest.mark.parametrize("where", [0, 30, 500, -1])
def test_unseal_into_refuses_a_flipped_byte(data_key, where):
    blob = bytearray(crypto.seal(data_key, b"y" * 1000, b"ctx"))
    blob[where] ^= 0x01
    with pytest.raises(crypto.TamperedError):
        crypto.unseal_into(data_key, bytes(blob), b"ctx", memoryview(bytearray(1100)))
    with pytest.raises(crypto.TamperedError):
        crypto.unseal_into(data_key, crypto.seal(data_key, b"z", b"ctx"), b"other", memoryview(bytearray(64)))


@pytest.mark.parametrize("size", [0, 1, crypto.SEGMENT - 1, crypto.SEGMENT, crypto.SEGMENT + 1, 2 * crypto.SEGMENT + 5])
def test_segmented_blobs_open_whole_in_place_and_segment_by_segment(data_key, size):
    plain = os.urandom(size)
    blob = crypto.seal(data_key, plain, b"ctx")
    assert len(blob) == crypto.sealed_size(size) and crypto.plain_size(blob) == size
    assert crypto.unseal(data_key, blob, b"ctx") == plain
    segments = list(crypto.unseal_segments(data_key, blob, b"ctx"))
    assert b"".join(segments) == plain and len(segments) == max(1, -(-size // crypto.SEGMENT))
    cut = min(size, 10)
    buf = bytearray(crypto.sealed_size(size) + 15)
    parts = bytes(crypto.seal_parts(data_key, [plain[:cut], memoryview(plain)[cut:]], b"ctx", buf))
    out = bytearray(size + 15)
    crypto.unseal_into(data_key, parts, b"ctx", memoryview(out))
    assert bytes(out[:size]) == plain


def _segment(blob: bytes, index: int) -> slice:
    start = crypto._HEAD + index * (crypto.SEGMENT + 16)
    return slice(start, start + crypto.SEGMENT + 16)


def test_segments_cannot_be_dropped_reordered_or_cut_off(data_key):
    """STREAM: each segment's nonce holds its place and whether it is the last."""
    blob = bytes(crypto.seal(data_key, os.urandom(3 * crypto.SEGMENT + 100), b"ctx"))
    s0, s1, s2 = (blob[_segment(blob, i)] for i in range(3))
    head, last = blob[: crypto._HEAD], blob[_segment(blob, 3).start :]
    for forged in (head + s0 + s1 + s2,  # cut at a segment boundary: s2 was not the last
                   head + s1 + s0 + s2 + last,  # reordered
                   head + s0 + s2 + last,  # one dropped
                   head + s0 + s0 + s1 + s2 + last,  # one repeated
                   blob[:-1]):  # cut inside the last
        with pytest.raises(crypto.TamperedError):
            crypto.unseal(data_key, forged, b"ctx")


def test_a_damaged_segment_stops_the_stream_after_the_authentic_ones(data_key):
    plain = os.urandom(3 * crypto.SEGMENT)
    blob = bytearray(crypto.seal(data_key, plain, b"ctx"))
    blob[_segment(blob, 1).start + 7] ^= 0x80
    stream = crypto.unseal_segments(data_key, bytes(blob), b"ctx")
    assert next(stream) == plain[: crypto.SEGMENT]
    with pytest.raises(crypto.TamperedError):
        next(stream)
    with pytest.raises(crypto.TamperedError):  # and the segment size in the header is authenticated
        blob = bytearray(crypto.seal(data_key, plain, b"ctx"))
        blob[crypto._HEAD - 1] ^= 0x01
        crypto.unseal(data_key, bytes(blob), b"ctx")


def test_blobs_of_the_first_format_still_open(data_key):
    """Archives written before segments (one AES-GCM message a blob) stay readable."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    plain = os.urandom(3000)
    salt, nonce = os.urandom(16), os.urandom(12)
    header = b"SPBLOB1\x00" + salt + nonce
    old = header + AESGCM(crypto._blob_key_bytes(data_key, salt)).encrypt(nonce, plain, header + b"ctx")
    assert crypto.unseal(data_key, old, b"ctx") == plain and crypto.plain_size(old) == len(plain)
    assert b"".join(crypto.unseal_segments(data_key, old, b"ctx")) == plain
    out = bytearray(len(plain) + 15)
    crypto.unseal_into(data_key, old, b"ctx", memoryview(out))
    assert bytes(out[: len(plain)]) == plain
    damaged = bytearray(old)
    damaged[100] ^= 1
    with pytest.raises(crypto.TamperedError):
        crypto.unseal(data_key, bytes(damaged), b"ctx")
