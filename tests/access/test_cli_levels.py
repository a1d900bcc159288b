"""``safepacs levels list|set|history|delete`` on a real archive's data dir: the security
administrator signs in (password + TOTP) and changes levels, into the archive's audit trail;
a refusal exits 2 and changes nothing."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from safepacs.access import totp
from safepacs.access.accounts import new_account
from safepacs.access.context import utc_now
from safepacs.access.passwords import hash_password
from safepacs.archive.service import Archive
from safepacs.audit.models import AuditEntry
from safepacs.cli import app

runner = CliRunner()
NEW_PASSWORD = "a long level admin passphrase"
TEACHING = {"header": "deidentified", "uids": "fresh", "dates": "remove", "pixels": "cleaned",
            "watermark": True, "keep": ["Modality", "Rows", "Columns", "PixelData"]}


def _officer(archive: Archive, username: str, role: str) -> str:
    """An account past its first sign-in (password set, TOTP enrolled): its TOTP secret."""
    ctx = archive.access.ctx
    with Session(ctx.engine) as s, s.begin():
        acct, _ = new_account(s, username, role, "test", ctx.now())
        acct.password_hash = hash_password(NEW_PASSWORD)
        acct.must_change_password = False
        secret = totp.new_secret()
        acct.totp_sealed = ctx.keys.seal_value(secret.encode(), b"totp:%d" % acct.pk)
        acct.totp_confirmed = True
    return secret


def test_levels_cli_for_the_security_admin_only(tmp_path):
    data_dir = tmp_path / "d"
    archive, _ = Archive.create(data_dir)
    secrets = {name: _officer(archive, name, role) for name, role in
               (("sec-1", "security_admin"), ("sec-2", "security_admin"), ("sys-1", "system_admin"))}
    archive.close()
    env = {"SAFEPACS_PASSWORD": NEW_PASSWORD, "COLUMNS": "200"}
    # a code is taken once (replays refused) and only within a step of now: three logins
    # per account, each with the next step's code
    steps = {name: iter((-30, 0, 30)) for name in secrets}

    def run(*args: str, who: str = "sec-1"):
        code = totp.code_at(secrets[who], utc_now() + timedelta(seconds=next(steps[who])))
        return runner.invoke(app, ["levels", *args, "--data-dir", str(data_dir), "--username", who,
                                   "--totp", code], env=env)

    good = tmp_path / "teaching.json"
    good.write_text(json.dumps(TEACHING))
    r = run("set", "teaching", "--file", str(good))
    assert r.exit_code == 0 and "version 1" in r.output, r.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(TEACHING, dates="someday-value")))
    r = run("set", "teaching", "--file", str(bad))
    assert r.exit_code == 2 and "someday-value" not in r.output
    r = run("set", "teaching", "--file", str(good), who="sys-1")
    assert r.exit_code == 2 and "level.manage" in r.output
    r = run("list", "--json", who="sys-1")  # administrators may read
    assert r.exit_code == 0
    listed = {lv["name"]: lv for lv in json.loads(r.output)}
    assert listed["teaching"]["version"] == 1 and listed["teaching"]["definition"] == TEACHING
    r = run("history", "teaching")
    assert r.exit_code == 0 and [h["action"] for h in json.loads(r.output)] == ["create"]
    r = run("delete", "anonymised", who="sec-2")
    assert r.exit_code == 2
    r = run("delete", "teaching", who="sec-2")
    assert r.exit_code == 0 and "deleted" in r.output
    archive = Archive.open(data_dir)
    try:
        archive.audit.flush()
        with archive.access.ctx.engine.connect() as conn:
            entries = [json.loads(bytes(e)) for e in conn.scalars(select(AuditEntry.entry))]
    finally:
        archive.close()
    changes = [(e["action"], e["user"]) for e in entries
               if e.get("level") == "teaching" and e.get("route", "").endswith("/api/levels/{name}")]
    assert changes == [("C", "sec-1"), ("D", "sec-2")]
