"""``safepacs export --project P --out DIR``: a research dataset, written by a member of the
project who signs in (--username, password from SAFEPACS_PASSWORD or a prompt, --totp).

Every object goes through the archive's own read path: the export decision for its study
(``authorize(action="export")``: audited as EXPORT; identified data needs the approved
multi-party request), then ``read_instance`` at the project's level, re-keyed and
watermarked to the reader under an issued serial.  Nothing is read around the access layer.

Minimisation: a project may carry a keep list, ``DATA_DIR/projects/<code>.json``
(``{"keep": ["Modality", "BodyPartExamined", ...]}``, edited by whoever approves the
project).  Exported objects then hold only those attributes plus what reading the image
needs (:data:`IMAGE_ATTRIBUTES`) and the forensic private block.  Without the file the
project's level decides alone.

Exit codes: 0 written, 1 some studies or objects refused or failed (reasons in the
manifest, without values), 2 usage error or sign-in refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from safepacs.cli_output import ask_secret, console, out
from safepacs.errors import SafepacsError

if TYPE_CHECKING:
    from safepacs.access.principal import Principal
    from safepacs.archive.service import Archive


#: kept whatever a project's keep list says: without them the pixels cannot be read or
#: placed, the object cannot be named, or a leak cannot be traced
IMAGE_ATTRIBUTES = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "PatientID", "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    "LongitudinalTemporalInformationModified", "Modality",
    "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "Rows", "Columns",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "NumberOfFrames",
    "FrameIncrementPointer", "PixelAspectRatio", "PixelSpacing", "ImagerPixelSpacing",
    "ImagePositionPatient", "ImageOrientationPatient", "SliceThickness", "FrameOfReferenceUID",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth",
    "LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
    "PixelData", "FloatPixelData", "DoubleFloatPixelData",
)
PROJECTS_DIR = "projects"


class ExportError(SafepacsError):
    """The export cannot run (no PHI in the message)."""


def keep_list(data_dir: Path, code: str) -> frozenset[int] | None:
    """The tags a project's exports keep, or None when the project has no keep list.
    An unreadable file or an unknown keyword refuses the export (fail closed)."""
    from pydicom.datadict import tag_for_keyword

    path = Path(data_dir) / PROJECTS_DIR / f"{code}.json"
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"project file cannot be read ({exc.__class__.__name__})") from None
    keep = doc.get("keep") if isinstance(doc, dict) else None
    if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
        raise ExportError("project file: 'keep' must be a list of attribute keywords")
    tags = [tag_for_keyword(k) for k in [*keep, *IMAGE_ATTRIBUTES]]
    if any(t is None for t in tags):
        raise ExportError(f"project file names {sum(t is None for t in tags)} unknown keyword(s)")
    return frozenset(int(t) for t in tags)  # type: ignore[arg-type]


def minimise(data: bytes, keep: frozenset[int]) -> bytes:
    """Part 10 bytes with only ``keep`` (top level; sequences kept whole) and the
    issuance's private block; file meta as it was."""
    import pydicom

    from safepacs.render.render import PRIVATE_GROUP

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data))
        for elem in list(ds):
            tag = int(elem.tag)
            if tag in keep or tag >> 16 == PRIVATE_GROUP:
                continue
            del ds[elem.tag]
        fp = io.BytesIO()
        ds.save_as(fp, enforce_file_format=True)
    return fp.getvalue()


def project_studies(archive: Archive, who: Principal, code: str) -> list[str]:
    """Stored UIDs of the studies ``who`` may read through project ``code`` now."""
    from sqlalchemy import select

    from safepacs.index.models import Study

    with archive.access.ctx.engine.connect() as conn:
        visible = list(conn.scalars(select(Study.study_uid).where(archive.access.visible_studies(who))
                                    .order_by(Study.pk)))
    return [uid for uid in visible if archive.masking.decision_quietly(who, uid).project == code]


def export_project(archive: Archive, who: Principal, code: str, dest: Path, *,
                   keep: frozenset[int] | None = None):  # noqa: ANN201 - ExportReport
    """Write project ``code``'s studies for ``who`` under ``dest``; returns the report."""
    from safepacs.archive.errors import ArchiveError
    from safepacs.audit.events import EXPORT, AuditEvent
    from safepacs.render.export import ExportReport, _path_for, write_export

    if who.role != "researcher":
        raise ExportError("only a project's researchers export its data")
    studies = project_studies(archive, who, code)
    if not studies:
        raise ExportError("no studies of this project are open to you")
    request_id = "export-" + secrets.token_hex(8)
    report = ExportReport("", code)
    levels: set[str] = set()

    def files():  # noqa: ANN202
        for index, study in enumerate(studies):
            try:
                decision = archive.authorize(who, study, action="export")
                refs = archive.instances(study_uid=study, principal=who)
            except ArchiveError:
                report.failed.append({"index": index, "reason": "export refused for this study"})
                continue
            levels.add(decision.level or "")
            for ref in refs:
                try:
                    data = bytes(archive.read_instance(ref.sop_uid, principal=who, request_id=request_id))
                    if keep is not None:
                        data = minimise(data, keep)
                    rel = _path_for(data)
                except (SafepacsError, ValueError) as exc:
                    report.failed.append({"index": index, "reason": exc.__class__.__name__})
                    continue
                report.files.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
                yield rel, data
        report.level = ",".join(sorted(levels))  # before write_export writes the manifest

    try:
        write_export(dest, files(), report)
    finally:
        archive.audit.record(AuditEvent(
            EXPORT, "R", outcome=0 if not report.failed else 4, user=who.username, role=who.role,
            address=who.address, route="cli:export", level=report.level, purpose=f"research:{code}",
            request_id=request_id, reason="project export",
            detail={"files": len(report.files), "failed": len(report.failed), "studies": len(studies),
                    "minimised": keep is not None}))
    return report


def export(
    project: Annotated[str, typer.Option("--project", help="The project's code.")],
    dest: Annotated[Path, typer.Option("--out", help="An empty or new folder.")],
    username: Annotated[str, typer.Option("--username", help="Your (researcher) account.")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The archive's data dir.")] = Path("safepacs-data"),
    totp: Annotated[str, typer.Option("--totp", help="The current code of your authenticator.")] = "",
    database_url: Annotated[str | None, typer.Option("--database-url", help="Overrides the settings; also SAFEPACS_DATABASE_URL.")] = None,
) -> None:
    """Export a research project's studies at the project's level, with a manifest."""
    from safepacs.archive.service import Archive

    if dest.exists() and any(dest.iterdir()):
        console.print("[bold red]error:[/] the output folder is not empty")
        raise typer.Exit(2)
    if dest.resolve().is_relative_to(data_dir.resolve()):
        console.print("[bold red]error:[/] the output folder must lie outside the data dir (the archive manages what is in it)")
        raise typer.Exit(2)
    try:
        keep = keep_list(data_dir, project)
        archive = Archive.open(data_dir, database_url=database_url or os.environ.get("SAFEPACS_DATABASE_URL"))
    except SafepacsError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    try:
        password = ask_secret("Password", env="SAFEPACS_PASSWORD")
        try:
            result = archive.access.login(username, password, totp, address="cli")
        except SafepacsError:
            result = None
        ok = result is not None and result.status == "ok"
        who = archive.authenticate(result.access_token, address="cli") if ok else None  # type: ignore[union-attr]
        if who is None:
            console.print("[bold red]error:[/] sign-in refused")
            raise typer.Exit(2)
        try:
            report = export_project(archive, who, project, dest, keep=keep)
        except SafepacsError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
    finally:
        archive.close()
    out.print(f"exported {len(report.files)} object(s) of project {project} at level {report.level or '-'}"
              f" to {dest}" + (f"; {len(report.failed)} refused or failed (see manifest.json)" if report.failed else ""))
    if report.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``export`` to the main CLI."""
    app.command()(export)
