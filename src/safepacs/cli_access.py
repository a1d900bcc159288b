"""Account, policy and level commands: ``safepacs user create|list|disable|reset`` (a system
administrator logs in with --username, the password from SAFEPACS_PASSWORD or a prompt, and
--totp), ``safepacs access policy show``, and ``safepacs levels list|history|set|delete`` (the
security administrator's site access levels; the administrators may list them).

They work on the data dir directly but go through the same ``AccessControl`` checks as the
HTTP API: the CLI is not a way around role separation.  Exit codes: 0 done, 2 refused or
usage error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from safepacs.cli_output import ask_secret, out
from safepacs.cli_output import fail as _fail
from safepacs.errors import SafepacsError

if TYPE_CHECKING:
    from safepacs.access.principal import Principal
    from safepacs.access.service import AccessControl

T = TypeVar("T")

user_app = typer.Typer(help="Accounts (system administrator).", no_args_is_help=True)
access_app = typer.Typer(help="Access control.", no_args_is_help=True)
policy_app = typer.Typer(help="The access policy.", no_args_is_help=True)
access_app.add_typer(policy_app, name="policy")
levels_app = typer.Typer(help="Site access levels (security administrator).", no_args_is_help=True)

DataDir = Annotated[Path, typer.Option("--data-dir", help="The archive's data dir.")]
AdminName = Annotated[str, typer.Option("--username", help="Your (system administrator) account.")]
Totp = Annotated[str, typer.Option("--totp", help="The current code of your authenticator.")]


def _access(data_dir: Path, *, audited: bool = False) -> AccessControl:
    """The access core on ``data_dir``; ``audited``: its events go to the archive's audit
    trail (close it with :func:`_close`)."""
    from safepacs.access.service import AccessControl
    from safepacs.config import Settings
    from safepacs.index import db
    from safepacs.store.service_keys import open_secrets

    try:
        settings = Settings.load(data_dir, database_url=os.environ.get("SAFEPACS_DATABASE_URL"))
        engine = db.make_engine(settings.database_url)
        db.ensure_schema(engine)
        keys = open_secrets(settings, engine)  # the access key is wrapped by the archive's KEK
        audit = None
        if audited:
            from safepacs.archive.service import open_audit

            audit = open_audit(engine, settings, keys=keys)
        return AccessControl(engine, keys, audit=audit)
    except SafepacsError as exc:
        raise _fail(str(exc)) from None


def _close(access: AccessControl) -> None:
    """Write what the audit trail holds, then let the database go."""
    close = getattr(access.ctx.audit, "close", None)
    if close is not None:
        close()
    access.ctx.engine.dispose()


def _login(access: AccessControl, username: str, totp: str) -> Principal:
    password = ask_secret("Password", env="SAFEPACS_PASSWORD")
    try:
        result = access.login(username, password, totp, address="cli")
    except SafepacsError as exc:
        raise _fail(str(exc)) from None
    if result.status != "ok":
        raise _fail(f"log in once through the API first ({result.status.replace('_', ' ')})")
    who = access.authenticate(result.access_token, address="cli")
    if who is None:
        raise _fail("login failed")
    return who


def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except SafepacsError as exc:
        raise _fail(str(exc)) from None


def _account_id(access: AccessControl, who: Principal, name: str) -> int:
    for view in _run(access.accounts.list, who):
        if view.username == name:
            return view.id
    raise _fail("no such account")


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="The new account's username.")],
    role: Annotated[str, typer.Option(help="Exactly one role: physician, radiologist, researcher, third_party, patient, service, or an administrator role.")],
    data_dir: DataDir,
    username: AdminName,
    totp: Totp = "",
) -> None:
    """Create an account; prints its one-time password once."""
    access = _access(data_dir)
    who = _login(access, username, totp)
    view, password = _run(access.accounts.create, who, name, role)
    out.print(f"created {view.username} ({view.role}); one-time password (shown once): {password}")


@user_app.command("list")
def user_list(data_dir: DataDir, username: AdminName, totp: Totp = "") -> None:
    """List accounts (no secrets)."""
    access = _access(data_dir)
    who = _login(access, username, totp)
    table = Table("id", "username", "role", "disabled", "locked", "2FA")
    for v in _run(access.accounts.list, who):
        table.add_row(str(v.id), v.username, v.role, str(v.disabled), str(v.locked), str(v.totp_enrolled))
    out.print(table)


@user_app.command("disable")
def user_disable(name: str, data_dir: DataDir, username: AdminName, totp: Totp = "") -> None:
    """Disable an account and end its sessions and API tokens."""
    access = _access(data_dir)
    who = _login(access, username, totp)
    _run(access.accounts.set_disabled, who, _account_id(access, who, name), True)
    out.print(f"disabled {name}")


@user_app.command("reset")
def user_reset(name: str, data_dir: DataDir, username: AdminName, totp: Totp = "") -> None:
    """New one-time password, second factor cleared, sessions ended."""
    access = _access(data_dir)
    who = _login(access, username, totp)
    password = _run(access.accounts.reset, who, _account_id(access, who, name))
    out.print(f"reset {name}; one-time password (shown once): {password}")


@policy_app.command("show")
def policy_show(
    as_json: Annotated[bool, typer.Option("--json", help="The policy file as JSON.")] = False,
    policy_file: Annotated[Path | None, typer.Option(help="Another policy file to check and show.")] = None,
) -> None:
    """Print the access policy (checked as it is loaded)."""
    from safepacs.access.policy import load

    policy = _run(load, policy_file)
    if as_json:
        out.print_json(json.dumps(policy.raw))
        return
    ops = Table("operation", "roles", title="administrative operations")
    for op, roles in sorted(policy.admin_operations.items()):
        ops.add_row(op, ", ".join(roles))
    out.print(ops)
    data = Table("role", "basis", "level", "purpose", title="data access")
    for role, rules in policy.data_access.items():
        for r in rules:
            data.add_row(role, r.basis, r.level, policy.purposes[r.basis])
    out.print(data)
    acts = Table("action", "roles", title="actions on studies")
    for action, roles in policy.actions.items():
        acts.add_row(action, ", ".join(roles))
    out.print(acts)
    out.print(f"second factor required for: {', '.join(sorted(policy.totp_required))}")
    out.print(f"approvals: {policy.approvals_needed} different approvers incl. "
              f"{policy.approval_must_include} for {', '.join(policy.approval_operations)}")


Admin = Annotated[str, typer.Option("--username", help="Your administrator account.")]


def _levels(data_dir: Path, username: str, totp: str, operation: str, *args: Any) -> Any:
    """Log in and call ``access.levels.<operation>`` with the audit trail open, then close it
    (the level commands are audited administrative operations)."""
    access = _access(data_dir, audited=True)
    try:
        return _run(getattr(access.levels, operation), _login(access, username, totp), *args)
    finally:
        _close(access)


@levels_app.command("list")
def levels_list(data_dir: DataDir, username: Admin, totp: Totp = "",
                as_json: Annotated[bool, typer.Option("--json", help="Definitions as JSON.")] = False) -> None:
    """The built-in and site access levels (any administrator)."""
    rows = _levels(data_dir, username, totp, "list")
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("level", "kind", "version", "header", "uids", "dates", "pixels", "watermark", "keep")
    for r in rows:
        d = r["definition"]
        keep = d.get("keep")
        table.add_row(r["name"], "built-in" if r["builtin"] else "site", str(r["version"] or "-"),
                      d["header"], d["uids"], d["dates"], d["pixels"], str(d["watermark"]),
                      "all" if keep is None else str(len(keep)))
    out.print(table)


@levels_app.command("history")
def levels_history(name: str, data_dir: DataDir, username: Admin, totp: Totp = "") -> None:
    """Every change of one site level (who, when, before and after) as JSON."""
    out.print_json(json.dumps(_levels(data_dir, username, totp, "history", name)))


@levels_app.command("set")
def levels_set(
    name: Annotated[str, typer.Argument(help="The site level's name (not a built-in one).")],
    file: Annotated[Path, typer.Option("--file", help="JSON: one level's rules, as in levels.json.")],
    data_dir: DataDir, username: Admin, totp: Totp = "",
) -> None:
    """Define or replace a site level (security administrator); new requests use it."""
    try:
        doc = json.loads(Path(file).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise _fail(f"{Path(file).name}: cannot read a JSON definition ({exc.__class__.__name__})") from None
    result = _levels(data_dir, username, totp, "put", name, doc)
    out.print(f"level {name}: version {result['version']}" + ("" if result["changed"] else " (unchanged)"))


@levels_app.command("delete")
def levels_delete(name: str, data_dir: DataDir, username: Admin, totp: Totp = "") -> None:
    """Delete a site level no active project or grant uses (security administrator)."""
    result = _levels(data_dir, username, totp, "delete", name)
    out.print(f"level {name}: deleted (history kept, version {result['version']})")


def register(app: typer.Typer) -> None:
    """Add ``user``, ``access`` and ``levels`` to the main CLI."""
    app.add_typer(user_app, name="user")
    app.add_typer(access_app, name="access")
    app.add_typer(levels_app, name="levels")
