"""The commands people type.  Each turns errors into a message and an exit code:
0 done, 1 some inputs rejected (or leaks found), 2 usage error."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, NoReturn

_DEID = sys.argv[1:2] == ["deid"]
if _DEID:
    # Header de-identification does no linear algebra; OpenBLAS's worker threads (started
    # when pydicom imports numpy) spun for about 3% of a ``safepacs deid`` run's CPU.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# ruff: noqa: E402 - the imports below run with the collector off (next comment)

# What the imports below load (pydicom's dictionaries, numpy, rich, typer: some 50 000
# objects) lives as long as the process and holds under a thousand objects in cycles, yet
# the cyclic collector walked it about 140 times while it loaded: 40-55 ms of every run.
_collecting = gc.isenabled()
gc.disable()

import typer
from rich.table import Table

from safepacs import __version__
from safepacs.cli_output import console, out, progress
from safepacs.cli_output import fail as _fail
from safepacs.deid.batch import (
    Job,
    Result,
    Task,
    collect_patient_identifiers,
    default_report,
    discover,
    needs_patient_pass,
    run,
)
from safepacs.deid.keys import Keys
from safepacs.deid.options import Options
from safepacs.errors import SafepacsError
from safepacs.files import open_new

if _DEID:
    # and no later collection walks it: the run's first one (see deid.batch._no_cyclic_gc)
    # then costs a few milliseconds, not 25
    gc.freeze()
if _collecting:
    gc.enable()

_app = typer.Typer(
    name="safepacs",
    help=(
        "safepacs: a privacy-first medical imaging archive.\n\n"
        "De-identify DICOM to PS3.15 Annex E (header), keep what was removed as an "
        "encrypted identity delta, and verify that nothing identifying is left."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

DEFAULT_KEY = Path("safepacs.key")


def _load_keys(key_file: Path, create: bool) -> Keys:
    try:
        keys = Keys.from_file(key_file, create=create)
    except SafepacsError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:  # its folder cannot be made, a read-only file system...
        raise _fail(f"{key_file}: cannot create the key file ({exc.__class__.__name__})") from None
    return keys


@_app.command()
def deid(
    input: Annotated[Path, typer.Argument(help="A DICOM file or a folder tree of them.")],
    output: Annotated[Path, typer.Argument(help="Output folder (or file, for a single input file). Never the input.")],
    key_file: Annotated[Path, typer.Option(help="Secret key for pseudonyms and UIDs; created (mode 0600) if absent.")] = DEFAULT_KEY,
    delta_dir: Annotated[Path | None, typer.Option(help="Write each file's identity delta here, encrypted (AES-256-GCM).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (1: in this process; never more than there are pieces of work).")] = 1,
    report: Annotated[Path | None, typer.Option(help="JSON-lines report (default: beside OUTPUT, as OUTPUT.safepacs-deid-report.jsonl; never inside it: the report names the input files, and export folders are often named after the patient).")] = None,
    retain_safe_private: Annotated[bool, typer.Option("--retain-safe-private", help="Keep private attributes on the reviewed safe list (113111).")] = False,
    retain_uids: Annotated[bool, typer.Option("--retain-uids", help="Keep original UIDs (113110).")] = False,
    retain_device_identity: Annotated[bool, typer.Option("--retain-device-identity", help="Keep station name, serial numbers (113109).")] = False,
    retain_institution_identity: Annotated[bool, typer.Option("--retain-institution-identity", help="Keep institution name/address (113112).")] = False,
    retain_patient_characteristics: Annotated[bool, typer.Option("--retain-patient-characteristics", help="Keep sex, age, size, weight... (113108).")] = False,
    retain_long_full_dates: Annotated[bool, typer.Option("--retain-long-full-dates", help="Keep dates unchanged (113106).")] = False,
    retain_long_modified_dates: Annotated[bool, typer.Option("--retain-long-modified-dates", help="Shift dates by a per-patient offset from the key (113107).")] = False,
    clean_descriptors: Annotated[bool, typer.Option("--clean-descriptors", help="Keep descriptions, scrubbed of identity (113105).")] = False,
    clean_structured_content: Annotated[bool, typer.Option("--clean-structured-content", help="Keep SR content, scrubbed (113104).")] = False,
    clean_graphics: Annotated[bool, typer.Option("--clean-graphics", help="Keep graphics/overlay text, scrubbed (113103).")] = False,
    accept_burned_in_risk: Annotated[bool, typer.Option("--accept-burned-in-risk", help="With --no-clean-pixels: process files that may carry burned-in text (US, SC, XA...) anyway.")] = False,
    clean_pixels: Annotated[bool | None, typer.Option("--clean-pixels/--no-clean-pixels", help="Clean Pixel Data (113101): remove identity burned into the pixels of every file / of none. Default: files that may carry burned-in text (BurnedInAnnotation YES, US, SC, XA...).", show_default=False)] = None,
    remove_all_text: Annotated[bool, typer.Option("--remove-all-text", help="Pixel cleaning removes every text found, not only identity (clinical marks too).")] = False,
) -> None:
    """De-identify DICOM files to PS3.15 Annex E (Basic Profile + the options chosen).

    Originals are never touched; outputs are written atomically and named by their new
    UIDs (OUTPUT/PatientID/StudyUID/SeriesUID/SOPUID.dcm). Exit 0: all done; 1: some
    files rejected (see the report); 2: usage error.
    """
    try:
        options = Options(
            retain_safe_private=retain_safe_private,
            retain_uids=retain_uids,
            retain_device_identity=retain_device_identity,
            retain_institution_identity=retain_institution_identity,
            retain_patient_characteristics=retain_patient_characteristics,
            retain_long_full_dates=retain_long_full_dates,
            retain_long_modified_dates=retain_long_modified_dates,
            clean_descriptors=clean_descriptors,
            clean_structured_content=clean_structured_content,
            clean_graphics=clean_graphics,
            accept_burned_in_risk=accept_burned_in_risk,
            clean_pixels={None: "auto", True: "always", False: "never"}[clean_pixels],
            remove_all_text=remove_all_text,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if not input.exists():
        raise _fail(f"{input}: no such file or folder")
    in_real, out_real = input.resolve(), output.resolve()
    if out_real == in_real or (input.is_dir() and out_real.is_relative_to(in_real)):
        raise _fail("OUTPUT must not be INPUT or lie inside it: safepacs never writes in place")
    single = input.is_file() and (output.suffix.lower() in (".dcm", ".dicom") or output.is_file())
    if single and output.exists() and output.resolve() == in_real:
        raise _fail("OUTPUT must differ from INPUT")
    if not single and in_real.is_relative_to(out_real):
        raise _fail("INPUT must not lie inside OUTPUT, the folder meant for release: the originals would travel with it")
    report_path = report or (None if single else default_report(output))
    for option, where in (("--report", report_path), ("--delta-dir", delta_dir)):
        if where is not None and where.resolve().is_relative_to(in_real):
            raise _fail(f"{option} must lie outside INPUT: safepacs never writes in place")
    if not single:  # nothing that re-identifies travels with the folder meant for release
        for option, where, why in (
            ("--report", report_path, "it maps input paths, often named after the patient, to the outputs"),
            ("--key-file", key_file, "with the key, anyone can recompute each pseudonym from an ID and open the deltas"),
            ("--delta-dir", delta_dir, "the deltas hold the removed identity (sealed with the key, but kept apart all the same)"),
        ):
            if where is not None and where.resolve().is_relative_to(out_real):
                raise _fail(f"{option} must not lie inside OUTPUT, the folder meant for release: {why}")
    out_root = output.parent if single else output
    if not single and output.exists() and not output.is_dir():
        raise _fail(f"{output}: a file; a folder INPUT needs a folder OUTPUT")
    if report_path is not None:
        _probe_report(report_path)
    for what, folder in (("OUTPUT", out_root), ("--delta-dir", delta_dir)):
        if folder is not None and not _writable_folder(folder):
            raise _fail(f"{what}: cannot make or write the folder {folder}")
    keys = _load_keys(key_file, create=True)
    job = Job(out_root, output if single else None, options, keys.secret, delta_dir, time.time() - 1)
    tasks: list[Task] = list(discover(input))
    results = _run_with_progress("de-identifying", tasks, job, workers)
    try:
        _write_report(report_path, results)
    except OSError as exc:  # the disk filled up meanwhile: the outputs stand, say so
        _summary(results, None)
        console.print(f"[bold red]error:[/] the report could not be written ({exc.__class__.__name__})")
        raise typer.Exit(1) from None
    _summary(results, report_path)
    if any(r.status == "rejected" for r in results):
        raise typer.Exit(1)


def _probe_report(path: Path) -> None:
    """Make the report's folder and try a file there now, not after all the work (whose
    outputs would then stand without their report)."""
    probe = path.with_name(path.name + ".part")
    try:
        open_new(probe, "w").close()
        probe.unlink()
    except OSError as exc:
        raise _fail(f"{path.parent}: cannot write the report there ({exc.__class__.__name__}); "
                    "pass --report PATH") from None


def _writable_folder(folder: Path) -> bool:
    """``folder`` is a folder this process may write in, or can be made (its nearest existing
    ancestor is one): checked before the run, not found out file by file."""
    while not folder.exists():
        if folder.parent == folder:
            return False
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def _run_with_progress(label: str, tasks: list[Task], job: Job, workers: int) -> list[Result]:
    if needs_patient_pass(job.options):
        with progress() as bars:
            bar = bars.add_task("collecting identity per patient", total=len(tasks))
            known = collect_patient_identifiers(tasks, lambda: bars.advance(bar))
        job = dataclasses.replace(job, patient_identifiers=known)
    with progress() as bars:
        bar = bars.add_task(label, total=len(tasks))
        return run(tasks, job, workers=workers, on_result=lambda _: bars.advance(bar))


def _write_report(path: Path | None, results: list[Result]) -> None:
    if path is None:
        return
    tmp = path.with_name(path.name + ".part")
    with open_new(tmp, "w", perm=0o600, encoding="utf-8") as fh:  # input paths: often patient names
        for r in results:
            fh.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _summary(results: list[Result], report: Path | None, title: str = "safepacs deid") -> None:
    counts = Counter(r.status for r in results)
    table = Table(title=title)
    table.add_column("status")
    table.add_column("files", justify="right")
    for status in ("ok", "rejected", "skipped"):
        if counts.get(status):
            table.add_row(status, str(counts[status]))
    console.print(table)
    cleaned = [r.pixels for r in results if r.pixels]
    if cleaned:
        removed = sum(p["boxes_removed"] for p in cleaned)
        found = sum(p["boxes_found"] for p in cleaned)
        ocr = sum(p["ocr_seconds"] for p in cleaned)
        console.print(
            f"pixels cleaned in {len(cleaned)} files: {removed} of {found} text boxes removed "
            f"(OCR {ocr:.1f} s)"
        )
    reasons = Counter(r.reason for r in results if r.status == "rejected")
    for reason, n in reasons.most_common(10):
        console.print(f"  [yellow]{n} rejected:[/] {reason}")
    if report is not None:
        console.print(f"report: {report}")


@_app.command()
def restore(
    deid_dir: Annotated[Path, typer.Argument(metavar="DEID", help="De-identified file or folder.")],
    deltas: Annotated[Path, typer.Argument(help="Folder of sealed identity deltas (--delta-dir of deid).")],
    output: Annotated[Path, typer.Argument(help="Where to write the restored originals.")],
    key_file: Annotated[Path, typer.Option(help="The key file used for de-identification.")] = DEFAULT_KEY,
) -> None:
    """Rebuild original objects from de-identified files and their identity deltas.

    The result contains identity again: write it only where identified data may be.
    """
    from safepacs.deid.restore import restore_tree

    if not deid_dir.exists() or not deltas.is_dir():
        raise _fail("DEID must exist and DELTAS must be a folder")
    out_real = output.resolve()
    if out_real.is_relative_to(deid_dir.resolve()):
        raise _fail("OUTPUT must not be DEID or lie inside it: the restored originals carry identity, "
                    "and DEID is the folder meant for release")
    if out_real.is_relative_to(deltas.resolve()):
        raise _fail("OUTPUT must not be DELTAS or lie inside it: keep the restored originals apart")
    keys = _load_keys(key_file, create=False)
    tasks = list(discover(deid_dir))
    with progress() as bars:
        bar = bars.add_task("restoring", total=len(tasks))
        results = restore_tree(deid_dir, deltas, output, keys, on_result=lambda _: bars.advance(bar), tasks=tasks)
    _summary(results, None, title="safepacs restore")
    if any(r.status == "rejected" for r in results):
        for r in results:
            if r.status == "rejected":
                console.print(f"  {r.input}: {r.reason}")
        raise typer.Exit(1)


@_app.command("verify-deid")
def verify_deid(
    original: Annotated[Path, typer.Argument(help="The original file or folder.")],
    deid_dir: Annotated[Path, typer.Argument(metavar="DEID", help="The de-identified file or folder.")],
    report: Annotated[Path | None, typer.Option(help="Write leaks (masked) as JSON here.")] = None,
    key_file: Annotated[Path | None, typer.Option(help="The de-identification key: with it, dates shifted under Modified Dates are checked against the same patient's original dates only.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Also count what is found inside attributes that a declared retain option keeps (listed apart otherwise).")] = False,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Processes that search the de-identified files (1: in this process). The originals are read once, first; the result is the same for any number.")] = 1,
) -> None:
    """Search every de-identified file for any identifying value of the originals.

    Prints a table of leaks (values masked) and exits 1 on any leak, 0 when clean.
    Values each file's declared options keep (its DeidentificationMethodCodeSequence) are
    allowed where they keep them; a needle found inside such a kept attribute is listed
    apart and not counted, unless it is a person's name, ID, birth date, address, phone or
    e-mail (or --strict is given).
    """
    from safepacs.deid.verify import run_verify

    keys = _load_keys(key_file, create=False) if key_file is not None else None
    code = run_verify(original, deid_dir, console=out, report=report, keys=keys, strict=strict,
                      workers=workers, bars=progress)
    raise typer.Exit(code)


@_app.command()
def synth(
    output: Annotated[Path, typer.Argument(help="Folder to write the synthetic corpus into.")],
    count: Annotated[int, typer.Option(min=1, help="Number of files.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 1,
    small: Annotated[bool, typer.Option("--small", help="Tiny pixel matrices (fast tests).")] = False,
) -> None:
    """Generate realistic synthetic DICOM with planted fake identity, plus answer_key.json."""
    from safepacs.synth import generate

    if output.exists() and not output.is_dir():
        raise _fail(f"{output}: a file; OUTPUT is a folder")
    try:
        with progress() as bars:
            bar = bars.add_task("generating", total=count)
            generate(output, count, seed, small=small, progress=lambda n: bars.update(bar, completed=n))
    except OSError as exc:
        raise _fail(f"{output}: cannot write the corpus there ({exc.__class__.__name__})") from None
    console.print(f"wrote {count} files and answer_key.json to {output}")


#: a demo folder's mark, and what a demo writes: only such a folder is ever replaced
_DEMO_MARK = ".safepacs-demo"
_DEMO_ENTRIES = frozenset({_DEMO_MARK, "original", "deid", "deltas", "restored", "demo.key", "answer_key.json",
                           "deid.safepacs-deid-report.jsonl"})


def _is_demo_folder(folder: Path) -> bool:
    """An empty folder, or one a demo made: ``demo FOLDER`` deletes it, so never anything else
    (``safepacs demo .`` would have deleted the folder it was run in)."""
    if not folder.is_dir() or folder.is_symlink():
        return False
    names = {p.name for p in folder.iterdir()}
    return _DEMO_MARK in names or names <= _DEMO_ENTRIES


@_app.command()
def demo(
    folder: Annotated[Path, typer.Argument(help="Working folder for the demo.")] = Path("demo"),
    count: Annotated[int, typer.Option(min=1)] = 60,
) -> None:
    """A walk-through of de-identification: generate a corpus, de-identify it, restore it,
    and verify that nothing identifying survived."""
    import shutil

    from safepacs.deid.restore import restore_tree
    from safepacs.deid.verify import run_verify
    from safepacs.synth import generate

    if folder.exists():
        if not _is_demo_folder(folder):
            raise _fail(f"{folder}: exists and is not a demo's folder; give a new or empty one "
                        "(the demo replaces what is in it)")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / _DEMO_MARK).write_text("made by 'safepacs demo'; its next run replaces this folder\n")
    orig, deid_out, deltas, restored = (folder / n for n in ("original", "deid", "deltas", "restored"))
    key_file = folder / "demo.key"
    console.rule("1. synthetic corpus with planted identity")
    generate(orig, count, 7, small=True)
    (orig / "answer_key.json").rename(folder / "answer_key.json")
    keys = Keys.from_file(key_file, create=True)
    console.rule("2. de-identify (Basic Profile + Clean Descriptors + Modified Dates)")
    options = Options(clean_descriptors=True, retain_long_modified_dates=True)
    job = Job(deid_out, None, options, keys.secret, deltas, time.time() - 1)
    results = _run_with_progress("de-identifying", list(discover(orig)), job, 2)
    _write_report(default_report(deid_out), results)
    _summary(results, None)
    console.rule("3. restore originals from the encrypted identity deltas")
    restored_results = restore_tree(deid_out, deltas, restored, keys)
    ok = sum(r.status == "ok" for r in restored_results)
    console.print(f"restored {ok} of {len(restored_results)} files")
    console.rule("4. verify: search the output for every identifying value of the input")
    code = run_verify(orig, deid_out, console=out, report=None, keys=keys, workers=2, bars=progress)
    raise typer.Exit(code)


@_app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


def _with_every_command() -> typer.Typer:
    """The whole command tree: the archive's commands join the de-identifier's here, on
    first use, so that ``safepacs deid`` (run once per batch, often in scripts) neither
    imports them nor has Typer build them (about 0.1 s a run)."""
    if not _registered:
        # archive (init, import, status, token, serve); retention and storage; audit trail;
        # rendering (trace); access (users, policy, levels); research exports
        collecting = gc.isenabled()
        gc.disable()  # as for the imports at the top: long-lived objects, next to no garbage
        try:
            from safepacs import (
                cli_access,
                cli_archive,
                cli_audit,
                cli_export,
                cli_render,
                cli_storage,
            )
        finally:
            if collecting:
                gc.enable()
        for module in (cli_archive, cli_storage, cli_audit, cli_render, cli_access, cli_export):
            module.register(_app)
        _registered.append(True)
    return _app


_registered: list[bool] = []


def __getattr__(name: str) -> object:
    if name == "app":  # ``from safepacs.cli import app``: the full tree
        return _with_every_command()
    raise AttributeError(name)


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["deid"]:
        solo = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="markdown")
        solo.command()(deid)
        try:
            solo(args=args[1:], prog_name="safepacs deid")
        except SystemExit as done:
            _leave(done.code)
        _leave(0)
    _with_every_command()()


def _leave(code: object) -> NoReturn:
    """End a ``safepacs deid`` process once its command has returned.

    Every output, the report and the summary are written, closed and renamed by then.
    Tearing down the interpreter (its last collection, then freeing every module's
    objects one by one) took 20-35 ms after the last line was printed: a cost that no
    number of workers divides.  So the streams and log handlers are flushed here, and
    the process ends without that teardown.
    """
    import logging

    status = code if isinstance(code, int) else (0 if code is None else 1)
    if not isinstance(code, int | None):
        print(code, file=sys.stderr)  # what SystemExit would print for a message
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        status = status or 1  # output lost (a closed pipe): not a clean success
    os._exit(status)
