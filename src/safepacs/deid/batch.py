"""Run header de-identification over a file or a folder tree, in one or more processes.

This is the I/O edge around the pure engine: it finds input files, reads headers, writes
outputs and sealed deltas atomically, and reports one line per file.  Reports carry paths,
statuses and reasons, never a value from inside a file.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset

from safepacs.deid.burnedin import burned_in_risk
from safepacs.deid.delta import DELTA_KEY_PURPOSE, IdentityDelta
from safepacs.deid.engine import deidentify_inplace, patient_key, text_value
from safepacs.deid.fastpath import FastDeid, eligible
from safepacs.deid.keys import Keys
from safepacs.deid.mislabelled import read_as_written
from safepacs.deid.options import Options
from safepacs.dicom.io import (
    DicomFile,
    DuplicateObject,
    _pixel_extent,
    header_as_read,
    load_pixel_group,
    read_header,
    write_atomic,
    write_bytes_atomic,
    write_copy_atomic,
)
from safepacs.errors import MEDIA_INDEX_REASON, InvalidDicom, MediaIndex, SafepacsError, io_reason

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_PIXEL_DATA = 0x7FE00010


@dataclass(frozen=True)
class Result:
    """One report line."""

    input: str
    output: str | None
    status: str  # "ok", "rejected", "skipped"
    reason: str | None = None
    #: Clean Pixel Data report (boxes found/removed, rule names, OCR time), when it ran
    pixels: dict | None = None

    def to_dict(self) -> dict:
        out = {"input": self.input, "output": self.output, "status": self.status, "reason": self.reason}
        if self.pixels is not None:
            out["pixels"] = self.pixels
        return out


@dataclass(frozen=True)
class Job:
    """Everything a worker needs; picklable so it crosses process boundaries."""

    out_root: Path
    single_output: Path | None
    options: Options
    secret: bytes
    delta_dir: Path | None
    started: float | None = None  # run start (epoch seconds): outputs newer than this are ours
    #: identity of each patient gathered from all their files (free-text cleaning options)
    patient_identifiers: dict | None = None
    #: headers the byte-level path can do take it (:mod:`safepacs.deid.fastpath`); off only
    #: to compare the two paths
    fast: bool = True


@dataclass(frozen=True)
class Task:
    path: Path | None
    rel: str
    problem: str | None = None  # set when discovery already knows the file is unusable
    size: int = 0  # bytes, as discovery saw them (0: not known); only shares out the work


def discover(root: Path) -> Iterator[Task]:
    """Every regular file under ``root`` (or ``root`` itself), in a stable order.

    Symbolic links to folders are followed once: a folder reached twice (a symlink loop,
    or two links to one folder) is reported instead of walked again.
    """
    root = Path(root)
    if not root.is_dir():
        yield Task(root, root.name)
        return
    seen: set[tuple[int, int]] = set()

    def walk(folder: Path, rel: str) -> Iterator[Task]:
        try:
            st = folder.stat()
        except OSError as exc:
            yield Task(None, rel or ".", f"cannot read folder ({exc.strerror or 'error'})")
            return
        key = (st.st_dev, st.st_ino)
        if key in seen:
            yield Task(None, rel, "symbolic link loop: folder already visited, not followed")
            return
        seen.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield Task(None, rel or ".", f"cannot list folder ({exc.strerror or 'error'})")
            return
        for entry in entries:
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError as exc:
                yield Task(None, child_rel, f"cannot follow link ({exc.strerror or 'error'})")
                continue
            if is_dir:
                yield from walk(Path(entry.path), child_rel)
                continue
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError as exc:
                yield Task(None, child_rel, f"cannot read file ({exc.strerror or 'error'})")
                continue
            mode = st.st_mode
            if stat.S_ISREG(mode) and _is_own_report(entry.name):
                continue
            if stat.S_ISREG(mode):
                yield Task(Path(entry.path), child_rel, size=st.st_size)
            else:
                yield Task(None, child_rel, "not a regular file")

    yield from walk(root, "")


REPORT_SUFFIX = "-report.jsonl"
#: ``deid``'s report: ``OUTPUT.safepacs-deid-report.jsonl`` beside OUTPUT (once inside it)
REPORT_NAME = "safepacs-deid-report.jsonl"


def default_report(output: Path) -> Path:
    """Where ``deid`` writes its report by default: beside OUTPUT, not inside it.  The report
    maps each input path to its output, and input folders are often named after the patient
    ("ZHANG_WEI_110105..."): inside OUTPUT it would travel with the released data as a
    re-identification key."""
    output = Path(output).absolute()
    return output.parent / f"{output.name or 'output'}.{REPORT_NAME}"


def _is_own_report(name: str) -> bool:
    """safepacs' own reports (beside an output folder, or inside one written by an older
    version) are not inputs of a later step."""
    return (name.startswith("safepacs-") and name.endswith(REPORT_SUFFIX)) or name.endswith("." + REPORT_NAME)


def output_path(job: Job, ds) -> Path:  # type: ignore[no-untyped-def]
    """Where a de-identified object goes: named by its new identifiers, never by the input's
    file name, which often carries the patient's name."""
    keywords = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    return output_path_of(job, *(str(ds.get(k, "") or "").strip() for k in keywords))


def output_path_of(job: Job, patient_id: str, study: str, series: str, sop: str) -> Path:
    """:func:`output_path` from the de-identified identifiers themselves."""
    if job.single_output is not None:
        return job.single_output

    def part(value: str, fallback: str) -> str:
        return _SAFE.sub("_", value)[:64] or fallback

    return (
        job.out_root
        / part(patient_id, "NOID")
        / part(study, "NOSTUDY")
        / part(series, "NOSERIES")
        / (part(sop, "NOSOP") + ".dcm")
    )


_worker_job: Job | None = None
_worker_keys: Keys | None = None
_worker_fast: FastDeid | None = None


def _init_worker(job: Job) -> None:
    global _worker_job, _worker_keys, _worker_fast
    _worker_job = job
    _worker_keys = Keys(job.secret)
    _worker_fast = None
    if job.fast and job.delta_dir is None and not job.patient_identifiers and eligible(job.options):
        _worker_fast = FastDeid(job.options, _worker_keys)


def process(task: Task) -> Result:
    """De-identify one file.  Never raises: every failure becomes a report line."""
    job, keys = _worker_job, _worker_keys
    assert job is not None and keys is not None
    if task.problem:
        return Result(task.rel, None, "rejected", task.problem)
    assert task.path is not None
    if task.path.name.upper() == "DICOMDIR":
        return Result(task.rel, None, "skipped", MEDIA_INDEX_REASON)
    try:
        out = _process_fast(task.path, job, _worker_fast) if _worker_fast is not None else None
        if out is not None:
            rel_out = os.path.relpath(out, job.out_root) if job.single_output is None else str(out)
            return Result(task.rel, rel_out, "ok")
        src = read_header(task.path)
        ds = src.dataset
        known = None
        if job.patient_identifiers:
            known = job.patient_identifiers.get(_identity_group(ds))
        read_as_written(ds)  # before any value is read (the original header's included)
        clean = should_clean_pixels(src, job.options)
        original = original_header(ds) if clean else None
        delta = deidentify_inplace(  # no pixel data: nothing can be burned in
            ds, job.options, keys, known_identifiers=known,
            pixels_cleaned=clean or not has_pixel_data(src),
        )
        if src.trailer is not None:
            for elem in list(src.trailer.elements()):
                delta.record((), src.trailer, elem.tag)
        delta.padding = src.padding
        delta.bare = src.bare
        if clean:
            pixel_report = clean_file_pixels(src, original, delta, job.options,
                                             keep_original=job.delta_dir is not None)
        out = output_path(job, ds)
        write_atomic(src, ds, out, exclusive_since=job.started)
        if job.delta_dir is not None:
            try:
                _write_delta(job, keys, ds, delta)
            except BaseException:
                out.unlink(missing_ok=True)  # a rejected file has no output (nor a delta)
                raise
    except MediaIndex:  # a DICOMDIR under another name: found by its SOP Class
        return Result(task.rel, None, "skipped", MEDIA_INDEX_REASON)
    except SafepacsError as exc:
        return Result(task.rel, None, "rejected", _strip_name(str(exc), task.path.name))
    except MemoryError:
        return Result(task.rel, None, "rejected", "out of memory")
    except OSError as exc:  # writing: a full disk, a quota, permissions
        return Result(task.rel, None, "rejected", io_reason(exc))
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - never let one file stop the run (a native
        # codec's panic is no Exception: see dicom.panics), never echo values
        return Result(task.rel, None, "rejected", f"internal error ({exc.__class__.__name__})")
    rel_out = os.path.relpath(out, job.out_root) if job.single_output is None else str(out)
    return Result(task.rel, rel_out, "ok", pixels=pixel_report if clean else None)


def _write_delta(job: Job, keys: Keys, ds: Dataset, delta: IdentityDelta) -> None:
    assert job.delta_dir is not None
    sealed = delta.seal(keys.derive(DELTA_KEY_PURPOSE), str(ds.get("SOPInstanceUID", "")))
    usual, own = delta_names(ds)
    try:
        write_bytes_atomic(job.delta_dir / usual, sealed, exclusive_since=job.started)
    except DuplicateObject:  # another object of this run has this SOP Instance UID
        write_bytes_atomic(job.delta_dir / own, sealed)


def delta_names(ds: Dataset) -> tuple[str, str]:
    """File names of the identity delta of the de-identified ``ds``: ``<SOPInstanceUID>.delta``,
    and the one used when another object of the same run has taken it (a SOP Instance UID
    reused in another study or for another patient, seen in real test data): the UID and a
    digest of the object's pseudonymous PatientID, Study and Series Instance UIDs, which
    restore computes from the de-identified object alike."""
    sop = _SAFE.sub("_", str(ds.get("SOPInstanceUID", "")))
    where = "\\".join(str(ds.get(k, "")) for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"))
    digest = hashlib.sha256(where.encode("utf-8", "replace")).hexdigest()[:16]
    return f"{sop}.delta", f"{sop}.{digest}.delta"


#: the header is looked for in this much of the file's start (a longer one: engine's path)
_FAST_HEAD = 64 * 1024


def _process_fast(path: Path, job: Job, fast: FastDeid) -> Path | None:
    """De-identify and write one file by the byte-level path; None when the engine's path
    must do it (nothing is written then).  Errors while writing are the caller's."""
    try:
        fh = open(path, "rb")
    except OSError:
        return None  # the engine's path says why
    with fh:
        size = os.fstat(fh.fileno()).st_size
        header = fast.header(fh.read(_FAST_HEAD), size)
        if header is None:
            return None
        start = header.pixel_start
        if start is not None:
            try:
                end = _pixel_extent(fh, start, size, header.implicit, True, path.name)
            except InvalidDicom:
                return None  # the engine's path reports it
            if end != size:
                return None  # data after the pixels: the engine's path keeps it in the delta
        out = output_path_of(job, header.patient_id, header.study_uid, header.series_uid, header.sop_uid)
        count = 0 if start is None else size - start
        write_copy_atomic(out, header.data, fh, start or 0, count, path.name,
                          exclusive_since=job.started)
    return out


def has_pixel_data(src: DicomFile) -> bool:
    """The object carries pixel data (read, or located in the input for a byte copy)."""
    return src.pixel_start is not None or _PIXEL_DATA in src.dataset


def should_clean_pixels(src: DicomFile, options: Options) -> bool:
    """Clean Pixel Data runs on files with pixel data: always, or ("auto") when the file
    may carry burned-in text.  Everything else keeps the header-only fast path."""
    if options.clean_pixels == "never" or not has_pixel_data(src):
        return False
    if "Rows" not in src.dataset or "Columns" not in src.dataset:
        return True  # pixel data without its geometry: the cleaner refuses it (fail closed)
    return options.clean_pixels == "always" or burned_in_risk(src.dataset) is not None


def original_header(ds: Dataset) -> Dataset:
    """The original header for the detector (the engine changes ``ds`` in place); pixel
    data, when a file was read whole, is not copied."""
    pixel = {t: ds._dict.pop(t) for t in [t for t in ds._dict if t >> 16 == 0x7FE0]}
    try:
        return copy.deepcopy(ds)
    finally:
        ds._dict.update(pixel)


def clean_file_pixels(
    src: DicomFile, original: Dataset, delta: IdentityDelta, options: Options,
    *, keep_original: bool = True,
) -> dict:
    """Clean the pixels of the de-identified ``src.dataset`` in place, mark it (113101,
    BurnedInAnnotation NO) and keep the originals in ``delta``; returns the report entry.
    ``keep_original`` False: ``delta`` is thrown away, so a re-encoded file's original
    pixel bytes are let go at once (a cine's compressed loop, held for nothing, was a third
    of the peak memory of cleaning it).

    The order for any caller (this runner, the archive's door): ``should_clean_pixels``,
    ``original_header``, ``deidentify_inplace(..., pixels_cleaned=True)``, then this.
    Raises :class:`~safepacs.deid.pixels.frames.PixelError` when pixels cannot be cleaned.
    """
    from safepacs.deid.engine import mark_pixels_cleaned
    from safepacs.deid.pixels.clean import clean_pixels, unload_pixels

    ds = src.dataset
    raw = load_pixel_group(src)  # None when the file was read whole
    loaded_here = raw is not None
    if not keep_original:
        raw = None
    # re-encoded pixels (compressed, or chroma-subsampled) keep these bytes in the delta
    with header_as_read(ds):
        result = clean_pixels(
            ds, original, remove_all_text=options.remove_all_text, delta=delta, original_group=raw,
            keep_original=keep_original,
        )
    if not result.changed and loaded_here:
        unload_pixels(ds)  # unchanged: copied from the input by byte range
    delta.pixels = result.pixels
    mark_pixels_cleaned(ds, delta)
    return result.report()


def _strip_name(message: str, name: str) -> str:
    prefix = f"{name}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def needs_patient_pass(options: Options) -> bool:
    """Free-text cleaning must know identity that only a patient's other files carry."""
    return options.clean_descriptors or options.clean_structured_content or options.clean_graphics


def _identity_group(ds) -> str:  # type: ignore[no-untyped-def]
    """Files pooled for free-text cleaning: same PatientID whatever the issuer (two issuers
    may well be one person, and pooling too much only scrubs more)."""
    pid = text_value(ds, 0x00100020).strip()
    return pid or patient_key(ds)


def collect_patient_identifiers(
    tasks: list[Task], on_file: Callable[[], None] | None = None
) -> dict:
    """First pass: the union of every file's identifiers, per patient.

    A name, address or ID written in one file's comments is often an attribute only in
    another file of the same patient; cleaning each file with the patient's whole identity
    removes it everywhere.  Unreadable files are skipped here and reported by the main pass.
    """
    from safepacs.deid.identifiers import collect_identifiers

    by_patient: dict = {}
    for task in tasks:
        if task.path is not None and not task.problem:
            try:
                ds = read_header(task.path).dataset
                read_as_written(ds)  # as the main pass reads it
                ids = collect_identifiers(ds).with_private_text(ds)
            except Exception:  # noqa: BLE001 - reported by the main pass
                ids = None
            if ids is not None:
                key = _identity_group(ds)
                known = by_patient.get(key)
                by_patient[key] = ids if known is None else known.union(ids)
        if on_file:
            on_file()
    return by_patient


def run(
    tasks: list[Task],
    job: Job,
    *,
    workers: int = 1,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Process ``tasks`` with ``workers`` processes (1: in this process), never more
    processes than there are pieces of work (see :func:`shares`)."""
    results: list[Result] = []
    pieces = list(shares(tasks, workers)) if workers > 1 else []
    workers = min(workers, len(pieces))
    with _no_cyclic_gc():
        if workers <= 1:
            _init_worker(job)
            for result in map(process, tasks):
                results.append(result)
                if on_result:
                    on_result(result)
            return results
        # loaded only here: multiprocessing's machinery is 10 ms of a one-process run's start-up
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(job,)) as pool:
            pending = [pool.submit(_process_all, piece) for piece in pieces]
            for future in pending:  # in input order, whichever worker finishes first
                for result in future.result():
                    results.append(result)
                    if on_result:
                        on_result(result)
    return results


def _process_all(tasks: list[Task]) -> list[Result]:
    return [process(task) for task in tasks]


#: what a file costs besides its bytes (opening, the header's work, the rename), in bytes
#: of copying that take as long
_FILE_COST = 1 << 20


def shares(tasks: list[Task], workers: int) -> Iterator[list[Task]]:
    """``tasks`` in order, cut into the pieces that workers take one at a time.

    A piece holds up to 16 files, fewer near the end: each is at most an eighth per
    worker of the work still left (bytes, and a fixed cost per file), so the last pieces
    are single files and the workers finish together.  Pieces of a fixed number of files
    left one worker copying a last run of radiographs while the other had stopped: some
    70 ms of a 2 s run over 500 files.
    """
    most = max(1, min(16, len(tasks) // (workers * 8)))
    left = sum(t.size for t in tasks) + _FILE_COST * len(tasks)
    piece: list[Task] = []
    weight = 0
    for task in tasks:
        piece.append(task)
        weight += task.size + _FILE_COST
        if len(piece) >= most or weight * 8 * workers >= left:
            yield piece
            left -= weight
            piece, weight = [], 0
    if piece:
        yield piece


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Collect rarely, and never through what was loaded before the run.

    Per-file work makes few reference cycles, yet the collector kept walking the
    long-lived objects (pydicom's dictionaries, the profile tables): a few per cent of a
    run.  Frozen before the workers fork, those objects are also not written to (and so
    not copied into each child) by a child's collections.  Collections still run, less
    often, so that an option that does make cycles cannot grow memory without bound.
    """
    threshold = gc.get_threshold()
    # no gc.collect() first: after the imports it finds nothing to free (0 objects) and
    # costs 8 ms of every run's serial start
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
