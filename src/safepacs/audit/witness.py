"""Witnesses: places outside the database that keep a copy of every published head.

A witness is what makes truncation and wholesale rewriting visible: whoever can edit the
database can drop the tail and the heads above it, but not the lines already appended to
another file or sent to a syslog collector.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Protocol

from safepacs.audit.heads import SignedHead


class Witness(Protocol):
    def publish(self, head: SignedHead) -> None: ...


class FileWitness:
    """Append-only JSON lines, one head per line, fsynced (ideally on another machine's mount)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def publish(self, head: SignedHead) -> None:
        line = (json.dumps(head.to_dict(), sort_keys=True, separators=(",", ":")) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)


def read_witness(path: Path) -> tuple[list[SignedHead], list[int]]:
    """The heads in a witness file, and the line numbers (1-based) that could not be parsed.

    Reads the file witness's JSON lines, and also a syslog collector's log of the heads
    :class:`SyslogWitness` sent (one message per line, the head's JSON after the header)."""
    heads, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            start = line.find("{")  # a syslog collector's file: the head follows the header
            try:
                if start < 0:
                    raise ValueError("no JSON object")
                heads.append(SignedHead.from_dict(json.loads(line[start:])))
            except (ValueError, KeyError, TypeError):
                bad.append(n)
    return heads, bad


class SyslogWitness:
    """Sends each head to a syslog collector (the sender spools while it is unreachable)."""

    def __init__(self, sender) -> None:  # type: ignore[no-untyped-def]
        self.sender = sender

    def publish(self, head: SignedHead) -> None:
        self.sender.send_text("safepacs-audit-head", json.dumps(head.to_dict(), sort_keys=True))
