"""Rebuild original objects from de-identified files and their sealed identity deltas."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pydicom import Dataset

from safepacs.deid.batch import Result, Task, _strip_name, delta_names, discover
from safepacs.deid.delta import DELTA_KEY_PURPOSE, LoadedDelta, unseal
from safepacs.deid.keys import Keys
from safepacs.dicom.io import load_pixel_group, read_header, write_atomic
from safepacs.errors import SafepacsError, io_reason


def restore_tree(
    deid: Path,
    deltas: Path,
    out: Path,
    keys: Keys,
    *,
    on_result: Callable[[Result], None] | None = None,
    tasks: list[Task] | None = None,
) -> list[Result]:
    """For every de-identified file under ``deid``, find ``<SOPInstanceUID>.delta`` in
    ``deltas``, open it with the key and write the original to ``out`` (same relative path):
    identified again, so ``out`` is made mode 0700 and each file 0600.

    A target that is one of the de-identified files is refused, never written: that would
    put an identified original where the de-identified copy was (``out`` around ``deid``).
    ``tasks``: ``deid`` already walked (a caller that counted them for a progress bar)."""
    results = []
    key = keys.derive(DELTA_KEY_PURPOSE)
    single = Path(deid).is_file()
    guarded = Path(deid).resolve()
    if not single:  # identified files: a folder others cannot look into, files only the owner reads
        Path(out).mkdir(parents=True, exist_ok=True, mode=0o700)
    for task in tasks if tasks is not None else discover(Path(deid)):
        if task.problem or task.path is None:
            result = Result(task.rel, None, "rejected", task.problem)
        else:
            result = _restore_one(task.path, task.rel, deltas, out, keys, key, single, guarded)
        results.append(result)
        if on_result:
            on_result(result)
    return results


def _restore_one(path: Path, rel: str, deltas: Path, out: Path, keys: Keys, key: bytes,
                 single: bool, guarded: Path) -> Result:
    target = Path(out) if single and not Path(out).is_dir() else Path(out) / rel
    if _within(target, guarded):
        return Result(rel, None, "rejected", "the restored original would overwrite a de-identified input")
    try:
        src = read_header(path)
        delta = _own_delta(src.dataset, Path(deltas), keys, key)
        if isinstance(delta, str):
            return Result(rel, None, "rejected", delta)
        if delta.pixels is not None and not delta.pixels.group:
            load_pixel_group(src)  # uncompressed: the patches go back into these pixels
        restored = delta.apply(src.dataset)
        pixel_bytes = None
        if delta.pixels is not None:
            from safepacs.deid.pixels.clean import restore_pixels

            pixel_bytes = restore_pixels(restored, delta.pixels)
        # exactly as it was
        write_atomic(src, restored, target, enforce_meta=False, pixel_bytes=pixel_bytes, group_lengths=True,
                     odd_lengths=True, preamble=delta.preamble, padding=delta.padding,
                     bare=delta.bare, private=True)
    except SafepacsError as exc:
        return Result(rel, None, "rejected", _strip_name(str(exc), path.name))
    except OSError as exc:  # writing: a full disk, a quota, permissions
        return Result(rel, None, "rejected", io_reason(exc))
    except Exception as exc:  # noqa: BLE001
        return Result(rel, None, "rejected", f"internal error ({exc.__class__.__name__})")
    return Result(rel, os.fspath(target), "ok")


def _within(target: Path, guarded: Path) -> bool:
    """``target`` is ``guarded`` or lies under it (links resolved)."""
    return target.resolve().is_relative_to(guarded)


def _own_delta(ds: Dataset, deltas: Path, keys: Keys, key: bytes) -> LoadedDelta | str:
    """The identity delta of the de-identified ``ds``, or why there is none.  The name that
    holds the object's own digest comes first: it exists only when another object of the run
    took the usual name (see :func:`safepacs.deid.batch.delta_names`)."""
    sop = str(ds.get("SOPInstanceUID", ""))
    usual, own = delta_names(ds)
    found = False
    for name in (own, usual):
        path = deltas / name
        if not path.is_file():
            continue
        found = True
        delta = unseal(path.read_bytes(), key, sop)
        if _is_own(delta, ds, keys):
            return delta
    if not found:
        return "no identity delta for this object"
    return ("the identity delta is another object's: same SOP Instance UID, other study or series "
            "(restoring it would give this object another identity)")


def _is_own(delta: LoadedDelta, ds: Dataset, keys: Keys) -> bool:
    """Whether ``delta`` was made for ``ds``: a delta is found and sealed by the SOP Instance
    UID alone, and two objects of a run can share one (a reused UID in another study, seen in
    real test data); their remapped Study and Series Instance UIDs tell them apart."""
    for tag in (0x0020000D, 0x0020000E):
        original = delta.original_text(tag)
        elem = ds.get(tag)
        current = str(elem.value if elem is not None else "").strip().rstrip("\x00")
        if original is not None and keys.uid(original) != current:
            return False
    return True
