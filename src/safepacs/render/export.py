"""A research dataset: every object rendered at the project's level, written to a folder
with a manifest.

The pure part (:func:`render_export`) turns (stored, delta) pairs into (relative path,
bytes); :func:`write_export` puts them on disk atomically and refuses to overwrite.  The
caller resolves the project, checks access and registers the export as one issued copy
(its serial goes into every watermark).  Files are named by the rendered identifiers only,
and an object that cannot be rendered is reported by position and reason, never by value.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from safepacs.errors import SafepacsError
from safepacs.files import open_new
from safepacs.render.levels import Level
from safepacs.render.render import RenderContext, render_instance

MANIFEST = "manifest.json"
_SAFE = re.compile(r"[^A-Za-z0-9.\-]")


@dataclass
class ExportReport:
    level: str
    project: str | None
    files: list[dict] = field(default_factory=list)  # {"path", "sha256", "size"}
    failed: list[dict] = field(default_factory=list)  # {"index", "reason"}

    def to_json(self) -> str:
        return json.dumps({"format": 1, "level": self.level, "project": self.project,
                           "count": len(self.files), "files": self.files, "failed": self.failed},
                          indent=1, sort_keys=True) + "\n"


def render_export(pairs: Iterable[tuple[bytes, bytes | None]], level: Level, ctx: RenderContext,
                  report: ExportReport) -> Iterator[tuple[str, bytes]]:
    """Render each pair at ``level``; yields (relative path, Part 10 bytes)."""
    for index, (stored, delta) in enumerate(pairs):
        try:
            data = render_instance(stored, delta, level, ctx)
            rel = _path_for(data)
        except SafepacsError as exc:
            report.failed.append({"index": index, "reason": str(exc)})
            continue
        report.files.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
        yield rel, data


def _path_for(data: bytes) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    parts = [str(ds.get(k, "") or "") for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
    parts = [_SAFE.sub("_", p)[:64] or "none" for p in parts]
    return "/".join(parts[:3]) + "/" + parts[3] + ".dcm"


def write_export(out: Path, files: Iterable[tuple[str, bytes]], report: ExportReport) -> ExportReport:
    """Write every file under ``out`` (temp + rename, never over an existing file), then
    the manifest; a repeated path is a reported conflict."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for rel, data in files:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        with open_new(tmp, "wb", perm=0o600) as fh:  # never through a link planted at the name
            fh.write(data)
        try:
            os.link(tmp, target)  # fails if the target exists: no silent overwrite
        except FileExistsError:
            report.failed.append({"index": -1, "reason": "two objects render to the same path"})
            last = max(i for i, f in enumerate(report.files) if f["path"] == rel)
            del report.files[last]  # the copy just rendered, not the one on disk
        finally:
            tmp.unlink(missing_ok=True)
    (out / MANIFEST).write_text(report.to_json(), encoding="utf-8")
    return report


def export(pairs: Iterable[tuple[bytes, bytes | None]], level: Level, ctx: RenderContext, out: Path,
           *, project: str | None = None) -> ExportReport:
    """Render and write a whole dataset; returns what was written and what failed."""
    report = ExportReport(level.name, project)
    return write_export(out, render_export(pairs, level, ctx, report), report)
