"""Passwords (Argon2id), TOTP steps, the access key file and sealing."""

from __future__ import annotations

import stat
from datetime import datetime, timedelta

import pytest

from safepacs.access import passwords, totp
from safepacs.access.errors import AccessError
from safepacs.access.keyfile import load_keys

NOW = datetime(2026, 1, 1, 12, 0, 0)


def test_argon2id_hash_and_verify():
    h = passwords.hash_password("a fine passphrase")
    assert h.startswith("$argon2id$")
    assert passwords.verify_password(h, "a fine passphrase")
    assert not passwords.verify_password(h, "a fine passphrasE")
    assert not passwords.verify_password(None, "a fine passphrase")
    assert not passwords.verify_password("not a hash", "x")
    assert not passwords.verify_password("", "")  # token-only accounts have no password


def test_password_rules():
    assert passwords.password_problem("short", min_length=12)
    assert passwords.password_problem("aaaaaaaaaaaaaaaa", min_length=12)
    assert passwords.password_problem("a fine passphrase", min_length=12) is None
    assert len(passwords.one_time_password()) >= 20


def test_totp_window_and_replay():
    secret = totp.new_secret()
    code = totp.code_at(secret, NOW)
    step = totp.matching_step(secret, code, NOW, 0)
    assert step is not None
    assert totp.matching_step(secret, code, NOW, step) is None  # used
    assert totp.matching_step(secret, code, NOW + timedelta(seconds=30), 0) == step  # drift
    assert totp.matching_step(secret, code, NOW + timedelta(seconds=95), 0) is None
    assert totp.matching_step(secret, "12345", NOW, 0) is None
    assert totp.matching_step(secret, "abcdef", NOW, 0) is None


def test_key_file_is_created_0600_and_seals(tmp_path):
    keys = load_keys(tmp_path / "keys")
    path = tmp_path / "keys" / "access.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keys(tmp_path / "keys") == keys and keys.jwt != keys.seal
    sealed = keys.seal_value(b"JBSWY3DPEHPK3PXP", b"totp:1")
    assert b"JBSWY3DPEHPK3PXP" not in sealed
    assert keys.open_value(sealed, b"totp:1") == b"JBSWY3DPEHPK3PXP"
    with pytest.raises(AccessError):
        keys.open_value(sealed, b"totp:2")  # bound to its account
    path.chmod(0o644)
    with pytest.raises(AccessError, match="owner only"):
        load_keys(tmp_path / "keys")
    with pytest.raises(AccessError, match="missing"):
        load_keys(tmp_path / "other", create=False)
