"""``safepacs user ...`` and ``safepacs access policy show`` on a real data dir."""

from __future__ import annotations

from datetime import timedelta

from typer.testing import CliRunner

from safepacs.access import totp
from safepacs.access.context import utc_now
from safepacs.archive import Archive
from safepacs.cli import app

runner = CliRunner()
NEW_PASSWORD = "a long admin passphrase"


def _admin_ready(data_dir) -> tuple[str, str]:
    """An archive (its access key wrapped by the KEK), the three admins, the system admin
    past first login."""
    archive, created = Archive.create(data_dir)
    username, otp = created["system_admin"]
    ac = archive.access
    setup = ac.auth.authenticate(ac.login(username, otp).setup_token, setup=True)
    ac.auth.change_password(setup, otp, NEW_PASSWORD)
    setup = ac.auth.authenticate(ac.login(username, NEW_PASSWORD).setup_token, setup=True)
    secret = ac.auth.enrol_totp(setup).split("secret=")[1].split("&")[0]
    ac.auth.confirm_totp(setup, totp.code_at(secret, utc_now() - timedelta(seconds=30)))
    archive.close()
    return username, secret


def test_user_create_and_disable_need_a_system_admin_login(tmp_path):
    data_dir = tmp_path / "d"
    username, secret = _admin_ready(data_dir)
    env = {"SAFEPACS_PASSWORD": NEW_PASSWORD}
    base = ["--data-dir", str(data_dir), "--username", username]
    r = runner.invoke(app, ["user", "create", "drlee", "--role", "physician", *base,
                            "--totp", totp.code_at(secret, utc_now())], env=env)
    assert r.exit_code == 0, r.output
    assert "drlee (physician)" in r.output and "one-time password" in r.output
    r = runner.invoke(app, ["user", "disable", "drlee", *base,
                            "--totp", totp.code_at(secret, utc_now() + timedelta(seconds=30))], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["user", "create", "x2", "--role", "physician", *base, "--totp", "000000"], env=env)
    assert r.exit_code == 2 and NEW_PASSWORD not in r.output
    r = runner.invoke(app, ["user", "list", "--data-dir", str(data_dir), "--username", "secadmin", "--totp", "1"],
                      env={"SAFEPACS_PASSWORD": "whatever pass"})
    assert r.exit_code == 2


def test_policy_show(tmp_path):
    r = runner.invoke(app, ["access", "policy", "show"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "care.manage" in r.output and "security_admin" in r.output
    r = runner.invoke(app, ["access", "policy", "show", "--json"])
    assert r.exit_code == 0 and '"admin_operations"' in r.output
    bad = tmp_path / "p.json"
    bad.write_text('{"admin_operations": {}}')
    r = runner.invoke(app, ["access", "policy", "show", "--policy-file", str(bad)])
    assert r.exit_code == 2
