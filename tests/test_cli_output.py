"""Where commands write, and when they draw progress bars."""

from __future__ import annotations

import io

from rich.console import Console

from safepacs import cli_output
from safepacs.cli_output import NoProgress, progress


def test_bars_are_drawn_only_on_a_terminal_or_when_asked(monkeypatch):
    monkeypatch.delenv("SAFEPACS_PROGRESS", raising=False)
    piped = Console(file=io.StringIO(), force_terminal=False)
    monkeypatch.setattr(cli_output, "console", piped)
    assert isinstance(progress(), NoProgress)  # a log file or a pipe gets no bars

    monkeypatch.setenv("SAFEPACS_PROGRESS", "1")
    with progress() as bars:
        bar = bars.add_task("importing", total=2)
        bars.advance(bar)
    assert not isinstance(bars, NoProgress)
    assert "importing" in piped.file.getvalue()

    monkeypatch.delenv("SAFEPACS_PROGRESS")
    terminal = Console(file=io.StringIO(), force_terminal=True)
    monkeypatch.setattr(cli_output, "console", terminal)
    assert not isinstance(progress(), NoProgress)
