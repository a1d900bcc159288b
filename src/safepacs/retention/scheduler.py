"""The retention job on a timer, for ``safepacs serve``: ``start(archive, interval)``."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from safepacs.audit.events import AuditSink
from safepacs.errors import SafepacsError
from safepacs.retention import shred
from safepacs.retention.certificate import Signer

_log = logging.getLogger("safepacs.retention")
FIRST_RUN_S = 300.0


class Scheduler:
    """A daemon thread running :func:`safepacs.retention.shred.run` every ``interval`` s."""

    def __init__(self, archive: object, interval: float, *, keys_dir: Path | None = None, audit: AuditSink | None = None,
                 first_after: float | None = None) -> None:
        if interval <= 0:
            raise ValueError("retention interval must be positive")
        self._archive, self._interval, self._audit = archive, interval, audit
        #: the first run comes soon after start (a server restarted daily would otherwise never run it)
        self._first = min(interval, FIRST_RUN_S) if first_after is None else first_after
        #: the archive's wrapped secrets (or, given, a bare keys folder)
        self._signing_keys = keys_dir or archive.secrets  # type: ignore[attr-defined]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="safepacs-retention", daemon=True)
        self.runs = 0
        self.last: shred.RunReport | None = None

    def _loop(self) -> None:
        delay = self._first
        while not self._stop.wait(delay):
            self.run_once()
            delay = self._interval

    def run_once(self) -> shred.RunReport | None:
        try:
            self.last = shred.run(self._archive, signer=Signer(self._signing_keys), audit=self._audit)
            if self.last.destroyed or self.last.failed:
                _log.info("retention: %d destroyed, %d failed, %d held, kek rotated: %s",
                          len(self.last.destroyed), len(self.last.failed), len(self.last.held), self.last.kek_rotated)
        except SafepacsError as exc:  # never a value from a file in the message
            _log.error("retention run failed: %s", exc)
        except Exception as exc:  # noqa: BLE001 - the timer must survive one bad run
            _log.error("retention run failed (%s)", exc.__class__.__name__)
        self.runs += 1
        return self.last

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def stop(self, timeout: float = 120) -> None:
        """Stop the timer; a run in progress finishes first (each of its steps is idempotent,
        but the archive must not close under it)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


def start(archive: object, interval: float, *, audit: AuditSink | None = None) -> Scheduler:
    """Run retention every ``interval`` seconds in the background; call ``.stop()`` at shutdown."""
    return Scheduler(archive, interval, audit=audit).start()
