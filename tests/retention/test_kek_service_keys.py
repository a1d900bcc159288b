"""KEK rotation covers the service secrets: afterwards the old KEK opens none of them, and the
session tokens, watermark traces and audit signatures made before still check out."""

from __future__ import annotations

from sqlalchemy import select
from typer.testing import CliRunner

from safepacs.archive import Archive
from safepacs.audit import events as ev
from safepacs.audit.events import AuditEvent
from safepacs.cli import app
from safepacs.index.models import SiteKey
from safepacs.retention import kek
from safepacs.store import crypto
from tests.store.legacy_keys import NAMES, marked_png

runner = CliRunner()


def test_rotation_rewraps_the_service_secrets_and_what_they_made_stays_valid(archive_dir, database_url, tmp_path):
    db_args = ["--database-url", database_url] if database_url else []
    arch, admins = Archive.create(archive_dir, database_url=database_url)
    try:
        username, otp = admins["system_admin"]
        token = arch.access.login(username, otp).setup_token
        sealed = arch.access.ctx.keys.seal_value(b"totp secret", b"totp:7")
        serial = marked_png(arch.masking.keys, archive_dir, tmp_path / "leak.png")
        arch.audit.record(AuditEvent(ev.APPLICATION_ACTIVITY, ev.EXECUTE, route="test:before"))
        arch.audit.flush()
        before = {n: arch.secrets.secret(n) for n in NAMES}
        old = crypto.read_kek_file(archive_dir / "keys" / "kek.key")
        result = kek.rotate(arch)
        assert result.rotated
        with arch._engine.connect() as conn:
            rows = dict(conn.execute(select(SiteKey.name, SiteKey.wrapped).where(SiteKey.name.in_(NAMES))).all())
        assert set(rows) == set(NAMES)
        for name, wrapped in rows.items():
            try:
                old.unwrap(wrapped, b"site:" + name.encode())
                raise AssertionError(f"the old KEK still opens the {name} key")
            except crypto.CryptoError:
                pass
        assert {n: arch.secrets.secret(n) for n in NAMES} == before  # the new KEK opens them
        arch.audit.record(AuditEvent(ev.APPLICATION_ACTIVITY, ev.EXECUTE, route="test:after"))
    finally:
        arch.close()
    with Archive.open(archive_dir, database_url=database_url) as arch:
        assert arch.access.auth.authenticate(token, setup=True).username == username
        assert arch.access.ctx.keys.open_value(sealed, b"totp:7") == b"totp secret"
    r = runner.invoke(app, ["trace", str(tmp_path / "leak.png"), "--data-dir", str(archive_dir), *db_args])
    assert r.exit_code == 0 and f"serial: {serial}" in r.output and "dr.chen" in r.output, r.output
    r = runner.invoke(app, ["audit", "verify", "--data-dir", str(archive_dir), *db_args])
    assert r.exit_code == 0 and "OK:" in r.output, r.output
