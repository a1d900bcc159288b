"""Where every command writes: results on stdout, messages and errors on stderr."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> typer.Exit:
    """An error line on stderr, and the exit to raise (2: usage or setup error)."""
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)
