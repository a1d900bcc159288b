"""Retention, storage, backup and decommission commands.

Exit codes: 0 done, 1 something was found or refused (damaged shards, a failed destruction,
an unproven decommission), 2 usage error.  Messages never carry values from files.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from safepacs.cli_output import ask_secret, console, out
from safepacs.cli_output import fail as _fail
from safepacs.errors import SafepacsError

retention_app = typer.Typer(help="Retention policies, legal holds, destruction certificates.", no_args_is_help=True)
storage_app = typer.Typer(help="Split storage: scrub, repair, custodians, sealing.", no_args_is_help=True)

DataDir = Annotated[Path, typer.Option("--data-dir", help="The archive's data dir.")]
DatabaseUrl = Annotated[str | None, typer.Option("--database-url", help="Override the index database URL.")]
SEALING_FILE = "sealing.json"  # safepacs.store.sealing.SEALING_FILE


def _open(data_dir: Path, database_url: str | None):  # type: ignore[no-untyped-def]
    """Open the archive, first settling a KEK rotation a crash interrupted."""
    from safepacs.archive import Archive
    from safepacs.config import Settings
    from safepacs.index import db
    from safepacs.retention.kek import finish_rotation

    try:
        settings = Settings.load(data_dir, database_url=database_url)
        engine = db.make_engine(settings.database_url)
        try:
            finish_rotation(settings.data_dir, settings.kek, engine)
        finally:
            engine.dispose()
        return Archive.open(data_dir, database_url=database_url)
    except SafepacsError as exc:
        raise _fail(str(exc)) from None


def _signer(archive):  # type: ignore[no-untyped-def]
    """The certificate signer, its key wrapped by the archive's KEK."""
    from safepacs.retention.certificate import Signer

    return Signer(archive.secrets)


def _vault(archive, data_dir: Path):  # type: ignore[no-untyped-def]
    """The vault of DATA_DIR/sealing.json ({"k": 3, "nodes": [URL, ...]}), or None."""
    from safepacs.store.sealing import attach_from_data_dir

    try:
        return attach_from_data_dir(archive, data_dir, audit=archive.audit)
    except SafepacsError as exc:
        raise _fail(str(exc)) from None


# --- retention -----------------------------------------------------------------------
@retention_app.command("plan")
def retention_plan(data_dir: DataDir, database_url: DatabaseUrl = None,
                   show_all: Annotated[bool, typer.Option("--all", help="Also list studies not yet due.")] = False) -> None:
    """Show what will be destroyed and when, without doing it."""
    from safepacs.retention import shred

    archive = _open(data_dir, database_url)
    try:
        entries = shred.current_plan(archive)
    except SafepacsError as exc:
        raise _fail(str(exc)) from None
    finally:
        archive.close()
    table = Table("study (de-identified UID)", "patient (pseudonym)", "policy", "due", "state")
    for e in entries:
        if not show_all and not e.expired:
            continue
        state = "held" if e.held and e.expired else "destroy now" if e.destroy else "kept"
        table.add_row(e.study_uid, e.patient, e.policy, e.due.isoformat(sep=" ", timespec="minutes") if e.due else "never", state)
    out.print(table)
    console.print(f"{sum(e.destroy for e in entries)} of {len(entries)} studies due for destruction, "
                  f"{sum(e.expired and e.held for e in entries)} held")


@retention_app.command("run")
def retention_run(data_dir: DataDir, database_url: DatabaseUrl = None) -> None:
    """Destroy every expired study not under a legal hold (crypto-shredding), with signed
    certificates in the audit trail."""
    from safepacs.retention import shred

    archive = _open(data_dir, database_url)
    try:
        _vault(archive, data_dir)
        report = shred.run(archive, signer=_signer(archive), audit=archive.audit)
    except SafepacsError as exc:
        raise _fail(str(exc)) from None
    finally:
        archive.close()
    console.print(f"destroyed {len(report.destroyed)}, held {len(report.held)}, failed {len(report.failed)}; "
                  f"KEK rotated: {report.kek_rotated}")
    for uid, error in report.failed:
        console.print(f"  failed: {uid} ({error})")
    if report.failed:
        raise typer.Exit(1)


@retention_app.command("erase")
def retention_erase(data_dir: DataDir, study: Annotated[str, typer.Option(help="De-identified StudyInstanceUID.")],
                    database_url: DatabaseUrl = None) -> None:
    """Destroy one study outside the retention policy (a patient's erasure request).  Needs an
    approved access-control request for operation erase_study on this study: the security
    administrator and a second account."""
    from safepacs.retention import shred

    archive = _open(data_dir, database_url)
    try:
        _vault(archive, data_dir)
        valid = float(archive.access.ctx.policy.defaults.get("approval_valid_hours", 72))
        approvers = shred.approvers_from_access(archive._engine, study, valid_hours=valid)
        if not approvers:
            raise _fail("no approved erase_study request for this study", 1)
        done = shred.destroy_study(archive, study, policy="erasure-request", signer=_signer(archive),
                                   approvers=approvers, erasure=True, audit=archive.audit)
    except SafepacsError as exc:
        raise _fail(str(exc), 1) from None
    finally:
        archive.close()
    console.print(f"destroyed; KEK rotated: {done.kek_rotated}")


@retention_app.command("hold")
def retention_hold(data_dir: DataDir, reason: Annotated[str, typer.Option(help="Case reference (no patient data).")],
                   by: Annotated[str, typer.Option(help="Who places the hold.")],
                   study: Annotated[str | None, typer.Option(help="De-identified StudyInstanceUID.")] = None,
                   patient: Annotated[str | None, typer.Option(help="Patient pseudonym.")] = None,
                   database_url: DatabaseUrl = None) -> None:
    """Place a legal hold: the study (or every study of the patient) is never destroyed
    while it is active."""
    from safepacs.retention import shred

    archive = _open(data_dir, database_url)
    try:
        pk = shred.place_hold(archive._engine, by=by, reason=reason, study_uid=study, patient=patient,
                              audit=archive.audit)
        covered = shred.stored_studies(archive._engine, study_uid=study, patient=patient)
    except SafepacsError as exc:
        raise _fail(str(exc)) from None
    finally:
        archive.close()
    out.print(f"hold {pk}")
    if not covered:
        console.print("[yellow]warning:[/] no stored study matches it yet; the hold stands and will cover "
                      "one that arrives under this identifier (check it for a typo)")
    else:
        console.print(f"covers {covered} stored stud{'y' if covered == 1 else 'ies'}")


@retention_app.command("release")
def retention_release(data_dir: DataDir, hold: Annotated[int, typer.Argument(help="Hold number.")],
                      by: Annotated[str, typer.Option(help="Who releases it.")], database_url: DatabaseUrl = None) -> None:
    """Release a legal hold."""
    from safepacs.retention import shred

    archive = _open(data_dir, database_url)
    try:
        shred.release_hold(archive._engine, hold, by=by, audit=archive.audit)
    except SafepacsError as exc:
        raise _fail(str(exc)) from None
    finally:
        archive.close()


@retention_app.command("certificates")
def retention_certificates(data_dir: DataDir, study: Annotated[str | None, typer.Option(help="Only this study.")] = None,
                           database_url: DatabaseUrl = None) -> None:
    """Export signed destruction certificates (JSON lines: certificate, signature, public key)."""
    from safepacs.retention import shred
    from safepacs.retention.certificate import export

    archive = _open(data_dir, database_url)
    try:
        certs = shred.certificates(archive._engine, study)
        public = _signer(archive).public_pem
    finally:
        archive.close()
    for cert, sig in certs:
        if sig:
            out.print(json.dumps(json.loads(export(cert, sig, public)), ensure_ascii=False), soft_wrap=True)


@retention_app.command("verify")
def retention_verify(certificate: Annotated[Path, typer.Argument(help="A file written by 'retention certificates' (one line).")]) -> None:
    """Verify an exported destruction certificate.  Exit 0 valid, 1 not valid, 2 unreadable."""
    from safepacs.retention.certificate import verify_certificate

    try:
        text = certificate.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # nothing to judge: say so, not "NOT valid"
        raise _fail(f"{certificate}: cannot read the certificate ({exc.__class__.__name__})") from None
    try:
        doc = json.loads(text.splitlines()[0])
        ok = verify_certificate(doc["certificate_json"], doc["signature"], doc["public_key_pem"].encode("ascii"))
        ok = ok and doc.get("certificate", json.loads(doc["certificate_json"])) == json.loads(doc["certificate_json"])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        ok = False
    out.print("valid" if ok else "NOT valid")
    raise typer.Exit(0 if ok else 1)


# --- storage -------------------------------------------------------------------------
def _split_stores(archive, data_dir: Path) -> list[tuple[str, object]]:  # type: ignore[no-untyped-def]
    from safepacs.store.split import SplitStore

    found = []
    primary = getattr(archive._store, "primary", archive._store)
    if isinstance(primary, SplitStore):
        found.append(("archive", primary))
    vault = _vault(archive, data_dir)
    if vault is not None:
        found.append(("sealed", vault.store))
    return found


@storage_app.command("scrub")
def storage_scrub(data_dir: DataDir, database_url: DatabaseUrl = None) -> None:
    """Check every shard's SHA-256 on every node; exit 1 when any is missing or corrupt."""
    archive = _open(data_dir, database_url)
    damaged = 0
    try:
        stores = _split_stores(archive, data_dir)
        if not stores:
            raise _fail("no split storage configured (store_url split://... or sealing.json)")
        for label, store in stores:
            report = store.scrub()  # type: ignore[attr-defined]
            damaged += len(report)
            nodes: dict[int, int] = {}
            for bad in report.values():
                for i in bad:
                    nodes[i] = nodes.get(i, 0) + 1
            console.print(f"{label}: {len(report)} damaged blobs; bad shards by node: {dict(sorted(nodes.items()))}")
    finally:
        archive.close()
    raise typer.Exit(1 if damaged else 0)


@storage_app.command("repair")
def storage_repair(
    data_dir: DataDir,
    node: Annotated[int | None, typer.Option(help="Index of a node to replace (0-based).")] = None,
    replacement: Annotated[str | None, typer.Option(help="Store URL of the replacement node.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Rebuild missing or corrupt shards (onto a replacement node when given) and verify
    every shard's hash."""
    from safepacs.store.blobs import open_store
    from safepacs.store.split import SplitError

    if (node is None) != (replacement is None):
        raise _fail("--node and --replacement go together")
    archive = _open(data_dir, database_url)
    failed = 0
    try:
        for label, store in _split_stores(archive, data_dir):
            if node is not None:
                try:
                    store.replace_node(node, open_store(replacement))  # type: ignore[attr-defined]
                except SafepacsError as exc:
                    raise _fail(str(exc)) from None
            repaired = 0
            for name in list(store.names()):  # type: ignore[attr-defined]
                try:
                    repaired += bool(store.repair(name))  # type: ignore[attr-defined]
                except SplitError:
                    failed += 1
            console.print(f"{label}: {repaired} blobs repaired, {failed} beyond repair")
            if node is not None:
                _remember_replacement(data_dir, label, store, node, replacement)  # type: ignore[arg-type]
    finally:
        archive.close()
    raise typer.Exit(1 if failed else 0)


def _remember_replacement(data_dir: Path, label: str, store, node: int, replacement: str) -> None:  # type: ignore[no-untyped-def]
    """Write the replacement node into the settings, so that the archive uses it from now on
    (and never again the node it replaced)."""
    from safepacs.config import Settings
    from safepacs.store.split import split_url

    if label == "sealed":
        path = Path(data_dir) / SEALING_FILE
        conf = json.loads(path.read_text("utf-8"))
        conf["nodes"][node] = replacement
        path.write_text(json.dumps(conf, indent=1) + "\n")
        return
    urls = [getattr(n, "url", None) for n in store.nodes]
    if all(urls):
        settings = Settings.load(data_dir, database_url=None)
        settings.store_url = split_url(store.k, urls)
        settings.save()
    else:
        console.print("[yellow]warning:[/] update store_url in safepacs.json with the replacement node")


@storage_app.command("add-custodian")
def storage_add_custodian(data_dir: DataDir, name: Annotated[str, typer.Argument(help="Custodian name.")],
                          by: Annotated[str, typer.Option(help="Who registers the custodian.")] = "",
                          database_url: DatabaseUrl = None) -> None:
    """Register a key custodian (asks for the custodian's passphrase; at least 12 characters)."""
    passphrase = ask_secret("custodian passphrase", confirm=True)
    archive = _open(data_dir, database_url)
    try:
        vault = _vault(archive, data_dir)
        if vault is None:
            raise _fail(f"no {SEALING_FILE} in the data dir")
        vault.add_custodian(name, passphrase, by=by)
    except SafepacsError as exc:
        raise _fail(str(exc)) from None
    finally:
        archive.close()


@storage_app.command("seal")
def storage_seal(data_dir: DataDir, study: Annotated[list[str], typer.Option(help="De-identified StudyInstanceUID (repeat).")],
                 custodian: Annotated[list[str], typer.Option(help="Custodian name (repeat, m of them).")],
                 k: Annotated[int, typer.Option(help="Custodian approvals needed to open.")] = 2,
                 by: Annotated[str, typer.Option(help="Who seals.")] = "",
                 database_url: DatabaseUrl = None) -> None:
    """Seal studies: blobs to the split store, key split among custodians."""
    archive = _open(data_dir, database_url)
    try:
        vault = _vault(archive, data_dir)
        if vault is None:
            raise _fail(f"no {SEALING_FILE} in the data dir")
        for uid in study:
            moved = vault.seal_study(archive, uid, custodian, k, by=by)
            console.print(f"sealed {uid}: {moved} blobs, {k} of {len(custodian)} custodians to open")
    except SafepacsError as exc:
        raise _fail(str(exc)) from None
    finally:
        archive.close()


# --- backup and decommission -----------------------------------------------------------
def backup(data_dir: DataDir, dest: Annotated[Path, typer.Argument(help="New folder for the backup.")],
           database_url: DatabaseUrl = None) -> None:
    """Back up the index WITHOUT data keys, and the ciphertext blobs: a backup can never
    resurrect a study destroyed later (its key lives only in the live index)."""
    from safepacs.retention.backup import backup as run_backup

    if dest.resolve().is_relative_to(Path(data_dir).resolve()):
        raise _fail("DEST must lie outside the data dir: the archive manages and cleans what is in it, "
                    "and a backup beside the live data shares its disk")
    archive = _open(data_dir, database_url)
    try:
        _vault(archive, data_dir)
        report = run_backup(archive, dest)
    except SafepacsError as exc:
        raise _fail(str(exc)) from None
    finally:
        archive.close()
    console.print(f"backup in {report.folder}: {report.rows} index rows, {report.blobs} blobs, {report.bytes:,} bytes")
    if report.missing:
        console.print(f"[yellow]warning:[/] {report.missing} blobs the index names are missing from the store "
                      "(damage, or studies destroyed while the backup ran); the backup holds the rest")
        raise typer.Exit(1)


def decommission(data_dir: DataDir,
                 yes: Annotated[bool, typer.Option("--yes", help="Really destroy every key of this archive.")] = False,
                 node: Annotated[int | None, typer.Option(help="Decommission one split-storage node instead (0-based).")] = None,
                 replacement: Annotated[str | None, typer.Option(help="Store URL taking over that node's shards.")] = None,
                 database_url: DatabaseUrl = None) -> None:
    """Decommission a whole data dir (crypto-erase every key, prove no remaining key opens
    any blob) or one split-storage node (move its shards, wipe it)."""
    from safepacs.retention.decommission import decommission_data_dir, decommission_node
    from safepacs.store.blobs import open_store

    archive = _open(data_dir, database_url)
    if node is not None:
        try:
            stores = _split_stores(archive, data_dir)
            if not stores or replacement is None:
                raise _fail("node decommissioning needs split storage and --replacement")
            label, split = stores[0]
            try:
                proof = decommission_node(split, node, open_store(replacement), audit=archive.audit)  # type: ignore[arg-type]
            except SafepacsError as exc:
                raise _fail(str(exc)) from None
            if not proof.failed:  # otherwise the old node, kept whole, stays in the settings
                _remember_replacement(data_dir, label, split, node, replacement)
        finally:
            archive.close()
        kept = (f"; {proof.failed} blobs could not be rebuilt, so the old node was kept and stays in use"
                if proof.failed else "")
        console.print(f"node {node}: {proof.blobs} blobs moved, {proof.left_on_node} left{kept}; proven: {proof.proven}")
        raise typer.Exit(0 if proof.proven else 1)
    if not yes:
        archive.close()
        raise _fail("this destroys every key of the archive for good; add --yes")
    result = decommission_data_dir(archive)
    console.print(f"keys destroyed: {len(result.keys_destroyed)}; KEK file erased: {result.kek_file_erased}; "
                  f"blobs checked: {result.blobs_checked}; keys remaining: {result.keys_remaining}; "
                  f"blobs opened: {result.blobs_opened}; proven: {result.proven} ({datetime.now().isoformat(timespec='seconds')})")
    raise typer.Exit(0 if result.proven else 1)


def register(app: typer.Typer) -> None:
    """Add these commands to the main CLI."""
    app.add_typer(retention_app, name="retention")
    app.add_typer(storage_app, name="storage")
    app.command()(backup)
    app.command()(decommission)
