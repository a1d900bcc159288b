"""Rendering commands: ``safepacs trace IMAGE`` names whom a leaked copy was issued to.

Exit codes: 0 a registered reader was found, 1 no valid mark (or a mark with no issued
copy behind it: nobody is named rather than a wrong reader), 2 usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from safepacs.cli_output import console, out
from safepacs.errors import SafepacsError


def trace(
    image: Annotated[Path, typer.Argument(help="A PNG, JPEG or DICOM file (a leaked copy).")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The archive's data dir.")] = Path("safepacs-data"),
    database_url: Annotated[str | None, typer.Option("--database-url", help="Overrides the settings; also SAFEPACS_DATABASE_URL.")] = None,
) -> None:
    """Recover who a rendered copy was issued to from its forensic watermark."""
    from safepacs.config import Settings
    from safepacs.index import db
    from safepacs.render.issuance import Issuances
    from safepacs.render.issuance import trace as run_trace
    from safepacs.render.keys import RenderKeys
    from safepacs.store.service_keys import open_secrets

    if not image.is_file():
        console.print("[bold red]error:[/] image not found")
        raise typer.Exit(2)
    engine = None
    try:
        settings = Settings.load(data_dir, database_url=database_url)
        engine = db.make_engine(settings.database_url)
        db.ensure_schema(engine)
        keys = RenderKeys.load(open_secrets(settings, engine), create=False)  # wrapped by the KEK
    except SafepacsError as exc:
        if engine is not None:
            engine.dispose()
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    try:
        issued = Issuances(engine)
        try:
            result = run_trace(image, keys.watermark, issued.lookup)
        except (OSError, ValueError) as exc:
            console.print(f"[bold red]error:[/] cannot read the image ({exc.__class__.__name__})")
            raise typer.Exit(2) from None
        issued.record_trace(result, user="cli")
    finally:
        engine.dispose()
    if result is None:
        out.print("no watermark of this site found")
        raise typer.Exit(1)
    c = result.copy
    out.print(f"issued to: {c.username} (account {c.account_id}, role {c.role})")
    out.print(f"issued at: {c.issued_at.isoformat()}Z  serial: {c.serial}  request: {c.request_id or '-'}")
    out.print(f"instance:  {c.instance_uid}  level: {c.level}" + (f"  project: {c.project}" if c.project else ""))
    extra = f" (scale {result.detection.scale:g}, sync z {result.detection.sync_z:.1f})" if result.detection else ""
    out.print(f"found by:  {result.found_by}{extra}")


def register(app: typer.Typer) -> None:
    """Add the rendering commands to the main CLI."""
    app.command()(trace)
