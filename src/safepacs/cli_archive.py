"""Archive commands: init, import, status, token create, serve.

Exit codes as for ``deid``: 0 done, 1 some inputs rejected, 2 usage error (including a
data dir that is not an archive, or a wrong key).  Messages never carry values from files.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from safepacs.cli_output import console, out, progress
from safepacs.cli_output import fail as _fail
from safepacs.errors import MEDIA_INDEX_REASON, MediaIndex, SafepacsError, io_reason

token_app = typer.Typer(help="API tokens.", no_args_is_help=True)

DataDir = Annotated[Path, typer.Option("--data-dir", help="The archive's data dir.")]
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="sqlite:///PATH (default: DATA_DIR/index.sqlite) or postgresql://...; also SAFEPACS_DATABASE_URL."),
]


def _open(data_dir: Path, database_url: str | None):  # type: ignore[no-untyped-def]
    from safepacs.archive import Archive

    try:
        return Archive.open(data_dir, database_url=database_url)
    except SafepacsError as exc:
        raise _fail(str(exc)) from None


def init(
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    store_url: Annotated[str | None, typer.Option(help="file:///PATH (default: DATA_DIR/blobs) or s3://[KEY:SECRET@]BUCKET[/PREFIX]?endpoint=URL.")] = None,
    ae_title: Annotated[str, typer.Option(help="The archive's DICOM AE title.")] = "SAFEPACS",
    kek: Annotated[str | None, typer.Option(help="Key-encryption key: file:PATH (default file:keys/kek.key, created mode 0600) or env:VARIABLE.")] = None,
) -> None:
    """Create a new archive: database, key hierarchy, settings, and the three administrator
    accounts (system administrator, security administrator, security auditor), whose one-time
    passwords are printed once and must be changed at first sign-in."""
    from safepacs.archive import Archive

    try:
        archive, admins = Archive.create(
            data_dir, database_url=database_url, store_url=store_url, ae_title=ae_title, kek=kek
        )
    except (SafepacsError, ValueError) as exc:
        raise _fail(str(exc)) from None
    archive.close()
    console.print(f"new archive in {data_dir}")
    console.print("administrator accounts (one-time passwords, shown once; change at first sign-in):")
    for role, (username, password) in admins.items():
        out.print(f"{role}\t{username}\t{password}")


def import_(
    folder: Annotated[Path, typer.Argument(help="A DICOM file or a folder tree of them.")],
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    workers: Annotated[int, typer.Option(min=1, max=32, help="Worker processes (1: in this process).")] = 2,
    report: Annotated[Path | None, typer.Option(help="Write one JSON line per file here.")] = None,
) -> None:
    """Bulk-load DICOM files into the archive (de-identified at the door, encrypted at rest).

    Exit 0: every file stored (or already stored); 1: some rejected; 2: usage error.
    """
    from safepacs.deid.batch import discover
    from safepacs.parallel import ordered_map

    if not folder.exists():
        raise _fail(f"{folder}: no such file or folder")
    own = Path(data_dir).resolve()
    if folder.resolve().is_relative_to(own):
        raise _fail(f"{folder}: inside the data dir; its files are the archive's own, not objects to import")
    archive = _open(data_dir, database_url)  # checks keys and runs recovery, alone
    tasks, results = [], []
    for task in discover(folder):
        if task.path is not None and task.path.resolve().is_relative_to(own):
            results.append({"input": task.rel, "status": "skipped", "sop_instance_uid": None,
                            "reason": "inside the data dir: the archive's own file, not imported"})
        else:
            tasks.append(task)
    try:
        with progress() as bars:
            bar = bars.add_task("importing", total=len(tasks))
            _init_worker(archive)  # for work done in this process
            # processes: parsing and de-identifying are CPU-bound Python; each worker
            # opens the archive itself (the database serialises their commits)
            for line in ordered_map(_import_one, tasks, workers, initializer=_open_worker,
                                    initargs=(data_dir, database_url)):
                results.append(line)
                bars.advance(bar)
    finally:
        archive.close()
    if report is not None:
        report.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results), encoding="utf-8")
    counts = Counter(r["status"] for r in results)
    table = Table(title="safepacs import")
    table.add_column("status")
    table.add_column("files", justify="right")
    for status in ("stored", "duplicate", "skipped", "rejected"):
        if status != "skipped" or counts.get(status):
            table.add_row(status, str(counts.get(status, 0)))
    console.print(table)
    rejected = [r for r in results if r["status"] == "rejected"]
    for r in rejected[:20]:
        console.print(f"  [yellow]rejected[/] {r['input']}: {r['reason']}")
    if len(rejected) > 20:
        console.print(f"  ... and {len(rejected) - 20} more" + (f" (see {report})" if report else ""))
    if rejected:
        raise typer.Exit(1)


_worker_archive = None


def _init_worker(archive) -> None:  # type: ignore[no-untyped-def]
    global _worker_archive
    _worker_archive = archive


def _open_worker(data_dir: Path, database_url: str | None) -> None:
    from safepacs.archive import Archive

    _init_worker(Archive.open(data_dir, database_url=database_url))


def _import_one(task) -> dict:  # type: ignore[no-untyped-def]
    """Ingest one file; never raises: every failure becomes a report line without values."""
    archive = _worker_archive
    assert archive is not None
    line = {"input": task.rel, "status": "rejected", "sop_instance_uid": None, "reason": task.problem}
    if task.problem:
        return line
    try:
        data = task.path.read_bytes()
    except OSError as exc:
        line["reason"] = f"cannot read file ({exc.strerror or exc.__class__.__name__})"
        return line
    try:
        stored = archive.ingest(data, source="import")
    except MediaIndex:  # a CD's or DVD's DICOMDIR: an index of the other files, not one
        line.update(status="skipped", reason=MEDIA_INDEX_REASON)
        return line
    except SafepacsError as exc:
        reason = str(exc)
        line["reason"] = reason.split(": ", 1)[1] if reason.startswith("object: ") else reason
        return line
    except OSError as exc:  # storing: a full disk, a quota
        line["reason"] = io_reason(exc)
        return line
    except Exception as exc:  # noqa: BLE001 - one file never stops the run, values never shown
        line["reason"] = f"internal error ({exc.__class__.__name__})"
        return line
    line.update(status=stored.status, sop_instance_uid=stored.sop_instance_uid, reason=None)
    return line


def status(
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts of patients, studies, series and instances, storage use and health."""
    archive = _open(data_dir, database_url)
    try:
        info = archive.status()
    finally:
        archive.close()
    if as_json:
        out.print_json(json.dumps(info, default=str))
        return
    table = Table(title=f"safepacs archive {data_dir}", show_header=False)
    for key, value in info.items():
        table.add_row(key, _human(key, value))
    out.print(table)
    if info.get("database") != "ok" or info.get("store") != "ok":
        raise typer.Exit(1)


def _human(key: str, value: object) -> str:
    if key.startswith("bytes") and isinstance(value, int):
        return f"{value:,} ({value / 1e6:.1f} MB)"
    return str(value)


@token_app.command("create")
def token_create(
    data_dir: DataDir,
    name: Annotated[str, typer.Option(help="The service account (created if new: lower-case letters, digits, . _ -).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API token for a service account (an integration: a viewer back end, a
    modality gateway) and print it once.  A service account stores objects and reads the
    de-identified view of every study, never identity; people sign in with their own
    accounts instead.  Audited as a security alert."""
    archive = _open(data_dir, database_url)
    try:
        token = archive.create_token(name)
    except (ValueError, SafepacsError) as exc:
        raise _fail(str(exc)) from None
    finally:
        archive.close()
    out.print(token)


def serve(
    data_dir: DataDir = Path("safepacs-data"),
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1, from the settings).")] = None,
    http_port: Annotated[int | None, typer.Option(min=0, max=65535, help="DICOMweb (HTTP) port (default 8080).")] = None,
    dicom_port: Annotated[int | None, typer.Option(min=0, max=65535, help="DIMSE port (default 11112; 0 disables it).")] = None,
    ae_title: Annotated[str | None, typer.Option(help="DICOM AE title (default from the settings).")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve HTTPS and DICOM TLS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    tls_ca: Annotated[Path | None, typer.Option(help="CA bundle: ask clients for certificates signed by it.")] = None,
    database_url: DatabaseUrl = None,
    demo: Annotated[bool, typer.Option("--demo/--no-demo", help="On first run, load a synthetic demo set.")] = True,
    retention: Annotated[bool, typer.Option("--retention/--no-retention",
                                            help="Destroy expired studies on a timer (retention_interval_s).")] = True,
    cors_origin: Annotated[list[str] | None, typer.Option(
        help="A web origin (https://viewer.example.org) whose pages may call DICOMweb from a "
             "browser, such as a viewer on another host; repeat for more. Adds to cors_origins "
             "in the settings. Default: none.")] = None,
) -> None:
    """Run the archive: DICOMweb and DIMSE.  On first run, initialise DATA_DIR (printing how
    to sign in) and load a synthetic demo set; later runs reuse it."""
    from safepacs import server
    from safepacs.config import check_origins
    from safepacs.memtune import keep_freed_memory

    keep_freed_memory()  # before the first big buffer: see safepacs.memtune
    try:
        check_origins(list(cors_origin or []))  # before anything is opened
        archive = server.open_or_create(data_dir, database_url=database_url, demo=demo)
    except SafepacsError as exc:
        raise _fail(str(exc)) from None
    try:
        server.run(
            archive, host=host, http_port=http_port, dicom_port=dicom_port, ae_title=ae_title,
            tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca, retention=retention,
            cors_origins=cors_origin,
        )
    except (ValueError, OSError, OverflowError, SafepacsError) as exc:  # a port taken or out of range
        raise _fail(str(exc)) from None


def register(app: typer.Typer) -> None:
    """Add the archive commands to the main CLI."""
    app.command()(init)
    app.command("import")(import_)
    app.command()(status)
    app.command()(serve)
    app.add_typer(token_app, name="token")
