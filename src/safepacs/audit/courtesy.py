"""Background work that leaves the interpreter to request threads every fraction of a millisecond.

The audit writer signs a head for every entry and the anomaly checker runs its rules on every
event, in pure Python or in calls that keep the GIL.  Done in one go every 50 ms, that was
2-5 ms of GIL a batch; a retrieve that arrived meanwhile shared the interpreter with it and
took that much longer (one request in fifty, a 0.5 MB slice's 1.3 ms became 4-5 ms).  A
shorter switch interval does not help: the two threads still take turns until the batch is
done.  Pausing the background thread itself (a real sleep, which releases the GIL and lets a
waiting thread take it) bounds what a request waits to one slice of background work.
"""

from __future__ import annotations

import time

#: background work between two pauses (seconds)
SLICE_S = 0.0002
#: the pause: long enough for a waiting thread to wake and take the GIL
PAUSE_S = 0.00005


class Courtesy:
    """Call ``tick()`` between small units of background work; it sleeps briefly once the
    work since the last pause exceeds ``slice_s``.  One instance per thread."""

    def __init__(self, slice_s: float = SLICE_S, pause_s: float = PAUSE_S) -> None:
        self.slice_s = slice_s
        self.pause_s = pause_s
        self.pauses = 0
        self._since = time.perf_counter()

    def start(self) -> None:
        """Begin a new run of work (time spent waiting before it does not count)."""
        self._since = time.perf_counter()

    def tick(self) -> None:
        now = time.perf_counter()
        if now - self._since >= self.slice_s:
            time.sleep(self.pause_s)
            self.pauses += 1
            self._since = time.perf_counter()
