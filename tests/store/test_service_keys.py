"""The service secrets (access, render, audit signing) wrapped by the KEK: never plaintext
in a new data dir, imported from the key files of an old one (tokens, traces and audit
signatures made before stay valid), unopenable without the KEK, upgrades that settle."""

from __future__ import annotations

import shutil

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from safepacs.access.errors import AccessError
from safepacs.access.keyfile import load_keys
from safepacs.access.service import AccessControl
from safepacs.archive import Archive
from safepacs.audit import events as ev
from safepacs.audit.events import AuditEvent
from safepacs.audit.heads import public_pem
from safepacs.audit.log import AuditLog
from safepacs.audit.witness import FileWitness
from safepacs.cli import app
from safepacs.cli_audit import WITNESS_FILE
from safepacs.config import Settings
from safepacs.index import db
from safepacs.render.keys import RenderKeys
from safepacs.store import crypto, service_keys
from tests.store.legacy_keys import (
    FILES,
    NAMES,
    files_holding,
    key_forms,
    make_old,
    marked_png,
    secrets_of,
)

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def _state(data_dir) -> tuple:
    """The key files and the wrapped keys: what a failed open must leave as it was."""
    from sqlalchemy import select

    from safepacs.index.models import SiteKey

    engine = db.make_engine(Settings.load(data_dir).database_url)
    try:
        with engine.connect() as conn:
            rows = sorted(conn.execute(select(SiteKey.name, SiteKey.wrapped, SiteKey.kek_id)).all())
    finally:
        engine.dispose()
    files = sorted((p.name, p.read_bytes()) for p in (data_dir / "keys").iterdir())
    return files, [tuple(r) for r in rows]


def _event(i: int) -> AuditEvent:
    return AuditEvent(ev.APPLICATION_ACTIVITY, ev.EXECUTE, route=f"test:{i}")


def _audit_verifies(data_dir) -> None:
    r = runner.invoke(app, ["audit", "verify", "--data-dir", str(data_dir)])
    assert r.exit_code == 0, r.output
    assert "OK:" in r.output


def test_a_new_archive_holds_no_service_secret_in_plaintext(tmp_path):
    data_dir = tmp_path / "data"
    archive, _ = Archive.create(data_dir)
    archive.audit.record(_event(1))
    archive.close()
    secrets = secrets_of(data_dir)
    assert len(set(secrets.values())) == 3 and all(len(v) == 32 for v in secrets.values())
    assert not [f for f in FILES.values() if list(data_dir.rglob(f + "*"))]
    assert files_holding(data_dir, key_forms(secrets)) == []
    # the public half stays where auditors look, and matches the wrapped key
    pub = (data_dir / "keys" / "audit-signing.pub").read_bytes()
    assert pub == public_pem(Ed25519PrivateKey.from_private_bytes(secrets[service_keys.AUDIT_SIGNING]).public_key())
    _audit_verifies(data_dir)


def test_an_archive_from_before_upgrades_on_open_and_what_its_keys_made_stays_valid(tmp_path):
    data_dir = tmp_path / "data"
    archive, admins = Archive.create(data_dir)
    archive.close()
    secrets = make_old(data_dir)
    keys_dir = data_dir / "keys"
    pub_before = (keys_dir / "audit-signing.pub").read_bytes()
    # what the old code did with the key files: a session token, a seal, a watermarked copy,
    # signed audit heads (the components on a bare folder read exactly those files)
    engine = db.make_engine(Settings.load(data_dir).database_url)
    old_access = AccessControl(engine, keys_dir)
    username, otp = admins["system_admin"]
    setup_token = old_access.login(username, otp).setup_token
    sealed = load_keys(keys_dir, create=False).seal_value(b"totp secret", b"totp:1")
    serial = marked_png(RenderKeys.load(keys_dir, create=False), data_dir, tmp_path / "leak.png")
    with AuditLog(engine, keys_dir, background=False, witnesses=[FileWitness(data_dir / WITNESS_FILE)]) as log:
        for i in range(5):
            log.record(_event(i))
    engine.dispose()
    assert files_holding(data_dir, key_forms(secrets))  # the old layout: plaintext keys

    with Archive.open(data_dir) as archive:
        assert {n: archive.secrets.secret(n) for n in NAMES} == secrets
        assert not [f for f in FILES.values() if list(keys_dir.glob(f + "*"))]
        assert archive.access.auth.authenticate(setup_token, setup=True).username == username
        assert archive.access.ctx.keys.open_value(sealed, b"totp:1") == b"totp secret"
        assert archive.masking.keys.secret.secret == secrets[service_keys.RENDER]
        archive.audit.record(_event(99))  # signed with the imported key
    assert files_holding(data_dir, key_forms(secrets)) == []
    assert (keys_dir / "audit-signing.pub").read_bytes() == pub_before
    r = runner.invoke(app, ["trace", str(tmp_path / "leak.png"), "--data-dir", str(data_dir)])
    assert r.exit_code == 0, r.output
    assert "dr.chen" in r.output and f"serial: {serial}" in r.output
    _audit_verifies(data_dir)
    with Archive.open(data_dir) as archive:  # a second open finds nothing left to do
        assert {n: archive.secrets.secret(n) for n in NAMES} == secrets


def test_a_data_dir_copied_without_its_kek_opens_none_of_the_service_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("SP_TEST_KEK", crypto.encode_kek(crypto.generate_key()))
    data_dir, copy = tmp_path / "data", tmp_path / "copy"
    archive, _ = Archive.create(data_dir, kek="env:SP_TEST_KEK")
    archive.audit.record(_event(1))
    archive.close()
    secrets = secrets_of(data_dir)
    shutil.copytree(data_dir, copy)
    assert files_holding(copy, key_forms(secrets)) == []  # nothing in the copy but ciphertext
    before = _state(copy)
    (tmp_path / "x.png").write_bytes(b"not an image")
    monkeypatch.delenv("SP_TEST_KEK")
    for _ in range(2):  # each attempt fails the same way and changes nothing
        with pytest.raises(crypto.CryptoError, match="SP_TEST_KEK"):
            Archive.open(copy)
        r = runner.invoke(app, ["trace", str(tmp_path / "x.png"), "--data-dir", str(copy)], env=WIDE)
        assert r.exit_code == 2 and "SP_TEST_KEK" in r.output and "Traceback" not in r.output
        r = runner.invoke(app, ["user", "list", "--data-dir", str(copy), "--username", "sysadmin", "--totp", "1"],
                          env={"SAFEPACS_PASSWORD": "some password", **WIDE})
        assert r.exit_code == 2 and "key-encryption key" in r.output
        r = runner.invoke(app, ["serve", "--data-dir", str(copy), "--no-demo"], env=WIDE)
        assert r.exit_code == 2 and "SP_TEST_KEK" in r.output and "Traceback" not in r.output
    monkeypatch.setenv("SP_TEST_KEK", crypto.encode_kek(crypto.generate_key()))  # another site's KEK
    with pytest.raises(crypto.CryptoError, match="wrong key-encryption key"):
        Archive.open(copy)
    engine = db.make_engine(Settings.load(copy).database_url)
    with pytest.raises(crypto.CryptoError, match="wrong key-encryption key"):
        service_keys.open_secrets(Settings.load(copy), engine)
    engine.dispose()
    assert _state(copy) == before
    _audit_verifies(copy)  # verification needs only the public key


def test_an_interrupted_upgrade_settles_to_the_one_key(tmp_path):
    data_dir = tmp_path / "data"
    archive, _ = Archive.create(data_dir)
    archive.close()
    keys_dir = data_dir / "keys"
    # crashed after the import, before the file went: file and row both present, equal
    secrets = make_old(data_dir, keep_rows=True)
    # and crashed in the middle of shredding one: the renamed remnant is left
    (keys_dir / ("access.key" + service_keys.SHRED_SUFFIX)).write_bytes((keys_dir / "access.key").read_bytes())
    with Archive.open(data_dir) as archive:
        assert {n: archive.secrets.secret(n) for n in NAMES} == secrets
    assert sorted(p.name for p in keys_dir.iterdir()) == ["audit-signing.pub", "kek.key"]
    assert files_holding(data_dir, key_forms(secrets)) == []


def test_two_processes_upgrading_at_once_agree_on_each_key(tmp_path):
    import threading

    data_dir = tmp_path / "data"
    archive, _ = Archive.create(data_dir)
    archive.close()
    secrets = make_old(data_dir)
    settings = Settings.load(data_dir)
    seen: list[dict] = []
    errors: list[BaseException] = []

    def opener() -> None:
        engine = db.make_engine(settings.database_url)
        try:
            src = service_keys.open_secrets(settings, engine)
            seen.append({n: src.secret(n) for n in NAMES})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and seen == [secrets] * 4
    assert sorted(p.name for p in (data_dir / "keys").iterdir()) == ["audit-signing.pub", "kek.key"]


def test_a_key_file_that_differs_from_the_wrapped_key_stops_the_open_and_is_kept(tmp_path):
    data_dir = tmp_path / "data"
    archive, _ = Archive.create(data_dir)
    archive.close()
    keys_dir = data_dir / "keys"
    stray = bytes(range(32))
    (keys_dir / "access.key").write_bytes(stray)
    (keys_dir / "access.key").chmod(0o600)
    wrapped = secrets_of(data_dir)
    for _ in range(2):
        with pytest.raises(crypto.CryptoError, match="differs") as exc:
            Archive.open(data_dir)
        assert stray.hex() not in str(exc.value)
        assert (keys_dir / "access.key").read_bytes() == stray
    assert secrets_of(data_dir) == wrapped


def test_a_key_file_open_to_others_is_refused_not_imported(tmp_path):
    data_dir = tmp_path / "data"
    archive, _ = Archive.create(data_dir)
    archive.close()
    make_old(data_dir)
    (data_dir / "keys" / "access.key").chmod(0o644)
    with pytest.raises(AccessError, match="chmod 600"):
        Archive.open(data_dir)
    assert (data_dir / "keys" / "access.key").exists()


def test_secrets_created_when_absent_are_shared_by_every_reader(tmp_path):
    data_dir = tmp_path / "data"
    archive, _ = Archive.create(data_dir)
    archive.close()
    settings = Settings.load(data_dir)
    engine = db.make_engine(settings.database_url)
    try:
        src = service_keys.open_secrets(settings, engine)
        made = src.secret("test-extra", lambda: b"\x01" * 32)
        assert src.secret("test-extra", lambda: b"\x02" * 32) == made == b"\x01" * 32
        with pytest.raises(crypto.CryptoError, match="holds no"):
            src.secret("absent")
    finally:
        engine.dispose()
