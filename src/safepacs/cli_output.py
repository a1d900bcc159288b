"""Where every command writes: results on stdout, messages and errors on stderr."""

from __future__ import annotations

import os
from types import TracebackType
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

console = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> typer.Exit:
    """An error line on stderr, and the exit to raise (2: usage or setup error)."""
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def ask_secret(prompt: str, *, env: str | None = None, confirm: bool = False) -> str:
    """A secret from the environment variable ``env`` when set, else typed (hidden).  With
    nothing to read it from (no terminal, end of input), a usage error that says how to give
    it, not click's bare "Aborted." and exit 1."""
    if env and os.environ.get(env):
        return os.environ[env]
    from click.exceptions import Abort

    try:
        return typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    except Abort:
        how = f"set {env} or run it in a terminal" if env else "run it in a terminal"
        raise fail(f"no {prompt.lower()} given ({how})") from None


class NoProgress:
    """Progress bars that draw nothing: what ``rich.progress.Progress(disable=True)`` does,
    for output that is not a terminal, without importing rich.progress."""

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        return None

    def add_task(self, description: str, total: float | None = 100.0, **fields: object) -> int:
        return 0

    def advance(self, task_id: int, advance: float = 1) -> None:
        return None

    def update(self, task_id: int, **fields: object) -> None:
        return None


def progress() -> Progress | NoProgress:
    """Progress bars on stderr when it is a terminal (or when ``SAFEPACS_PROGRESS`` is set,
    for a log that wants them); otherwise bars that draw nothing, and rich.progress (10 ms
    of a command's start-up) is not loaded."""
    if not console.is_terminal and not os.environ.get("SAFEPACS_PROGRESS"):
        return NoProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console,
    )
