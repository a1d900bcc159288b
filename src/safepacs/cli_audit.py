"""``safepacs audit``: verify the trail (online or from an export), export it, show a proof.

Exit codes: 0 the trail verifies, 1 tampering found (the first bad index is printed),
2 usage error.  Output names indices and sizes only, never a value of an entry.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from safepacs.cli_output import console, out
from safepacs.cli_output import fail as _fail
from safepacs.errors import SafepacsError

audit_app = typer.Typer(help="The tamper-evident audit trail: verify, export, proofs.", no_args_is_help=True)

KEYS_DIR = "keys"
WITNESS_FILE = "audit-witness.jsonl"

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="The archive's data dir.")]
DatabaseUrl = Annotated[str | None, typer.Option("--database-url", help="Overrides the data dir's database (also SAFEPACS_DATABASE_URL).")]


def _engine(data_dir: Path, database_url: str | None):  # type: ignore[no-untyped-def]
    from safepacs.config import Settings
    from safepacs.index import db

    try:
        settings = Settings.load(data_dir, database_url=database_url)
        engine = db.make_engine(settings.database_url)
        db.ensure_schema(engine)
    except SafepacsError as exc:
        raise _fail(str(exc)) from None
    return engine


@audit_app.command()
def verify(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    export: Annotated[Path | None, typer.Option("--export", help="Verify this JSON export instead of a live archive (offline).")] = None,
    public_key: Annotated[Path | None, typer.Option("--public-key", help="The log's Ed25519 public key (default: DATA_DIR/keys/audit-signing.pub).")] = None,
    witness: Annotated[list[Path] | None, typer.Option("--witness", help="A witness file of published heads (default: DATA_DIR/audit-witness.jsonl if present). Repeatable.")] = None,
) -> None:
    """Check every entry against the signed heads and witnesses; name the first bad index."""
    from safepacs.audit.heads import PUBLIC_FILE, load_public_key
    from safepacs.audit.verify import ExportError, read_export, verify_database
    from safepacs.audit.verify import verify as verify_entries
    from safepacs.audit.witness import read_witness

    if (data_dir is None) == (export is None):
        raise _fail("give exactly one of --data-dir or --export")
    if public_key is None:
        if data_dir is None:
            raise _fail("--export needs --public-key (the auditor's copy of the log's public key)")
        public_key = data_dir / KEYS_DIR / PUBLIC_FILE
    witnesses = list(witness or [])
    if not witnesses and data_dir is not None and (data_dir / WITNESS_FILE).exists():
        witnesses = [data_dir / WITNESS_FILE]
    try:
        pub = load_public_key(public_key)
        witnessed = []
        for w in witnesses:
            heads, bad_lines = read_witness(w)
            if bad_lines:
                console.print(f"warning: {w}: {len(bad_lines)} unreadable line(s), first at line {bad_lines[0]}")
            witnessed.extend(heads)
    except (SafepacsError, OSError) as exc:
        raise _fail(str(exc) if isinstance(exc, SafepacsError) else f"cannot read a witness file ({exc.__class__.__name__})") from None
    if export is not None:
        try:
            entries, heads = read_export(export)
        except ExportError as exc:
            raise _fail(str(exc)) from None
        report = verify_entries(entries, heads, pub, witness=witnessed)
    else:
        engine = _engine(data_dir, database_url)  # type: ignore[arg-type]
        try:
            report = verify_database(engine, pub, witness=witnessed)
        finally:
            engine.dispose()
    if report.ok:
        out.print(report.summary())
        raise typer.Exit(0)
    out.print(report.summary())
    for p in report.problems[:20]:
        out.print(f"  - {p}")
    shown = min(len(report.problems), 20)
    if report.problem_count > shown:
        out.print(f"  ... and {report.problem_count - shown} more")
    raise typer.Exit(1)


@audit_app.command("export")
def export_(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The archive's data dir.")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the JSON export ('-' for stdout).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Write the whole trail (entries and signed heads) as JSON, for offline verification."""
    import contextlib
    import os

    from safepacs.audit.verify import write_export
    from safepacs.files import open_new

    engine = _engine(data_dir, database_url)
    try:
        if str(out_file) == "-":
            n = write_export(engine, sys.stdout)
        else:
            tmp = out_file.with_name(out_file.name + ".part")
            try:
                with open_new(tmp, "w", make_parents=False, encoding="utf-8") as fh:
                    n = write_export(engine, fh)
                os.replace(tmp, out_file)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
                raise _fail(f"{out_file}: cannot write the export there ({exc.__class__.__name__})") from None
    finally:
        engine.dispose()
    console.print(f"exported {n} entries")


@audit_app.command()
def proof(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The archive's data dir.")],
    index: Annotated[int, typer.Argument(help="The entry's index.")],
    size: Annotated[int | None, typer.Option(help="Against the signed head of this size (default: the newest).")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Print the inclusion proof of one entry (JSON) against a signed head."""
    from safepacs.audit.proofs import inclusion_proof

    engine = _engine(data_dir, database_url)
    try:
        p = inclusion_proof(engine, index, size)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()
    out.print_json(json.dumps(p.to_dict()))


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
