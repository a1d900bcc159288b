"""Last access of each study, for retention periods counted "from last access".

Every read calls :func:`touch`, which costs one dictionary look-up and, at most once per
study per ``granularity`` (an hour), one dictionary update: nothing on the read path waits
for the database.  A background thread writes what was touched every ``flush_s`` seconds in
one transaction, and :func:`close` writes the rest when the archive closes.  A study
destroyed meanwhile gets no row back (only studies still in the index are written).

Precision is the granularity: a study read at 10:05 and again at 10:50 is recorded at
10:05.  Retention periods are days or years, so an hour never decides a destruction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from safepacs.index.models import Study
from safepacs.retention.models import StudyRetention

_log = logging.getLogger("safepacs.retention")
GRANULARITY_S = 3600.0
FLUSH_S = 60.0


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Recorder:
    """Debounced last-access writes for one archive (thread-safe)."""

    def __init__(self, engine: object, *, granularity_s: float = GRANULARITY_S, flush_s: float = FLUSH_S,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = _utc_now) -> None:
        self._engine = engine
        self._granularity = granularity_s
        self._flush_s = flush_s
        self._clock, self._now = clock, now
        self._seen: dict[str, float] = {}  # study -> monotonic time of the access last recorded
        self._pending: dict[str, datetime] = {}  # study -> access time not yet written
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def touch(self, study_uid: str) -> None:
        """Note a read of ``study_uid`` (stored UID).  Cheap: see the module docstring."""
        t = self._clock()
        last = self._seen.get(study_uid)
        if last is not None and t - last < self._granularity:
            return
        with self._lock:
            self._seen[study_uid] = t
            self._pending[study_uid] = self._now()
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._loop, name="safepacs-last-access", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._flush_s):
            self.flush()

    def flush(self) -> int:
        """Write every pending access now; returns the number of studies written.  On a
        database error the accesses stay pending for the next flush."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return 0
        try:
            with Session(self._engine) as session, session.begin():  # type: ignore[call-overload]
                live = set(session.scalars(select(Study.study_uid).where(Study.study_uid.in_(sorted(batch)))))
                rows = {r.study_uid: r for r in session.scalars(
                    select(StudyRetention).where(StudyRetention.study_uid.in_(sorted(live))))}
                for uid in live:
                    row = rows.get(uid)
                    if row is None:
                        session.add(StudyRetention(study_uid=uid, legal_basis="", last_access=batch[uid]))
                    elif row.last_access is None or row.last_access < batch[uid]:
                        row.last_access = batch[uid]
            return len(live)
        except SQLAlchemyError as exc:
            _log.error("last-access times not written (%s); retried at the next flush", exc.__class__.__name__)
            with self._lock:
                for uid, when in batch.items():
                    self._pending.setdefault(uid, when)
            return 0

    def forget(self, study_uid: str) -> None:
        """A destroyed study: drop what is pending for it."""
        with self._lock:
            self._pending.pop(study_uid, None)
            self._seen.pop(study_uid, None)

    def close(self) -> None:
        """Stop the timer and write what is pending."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(10)
        self.flush()


def recorder(archive: object) -> Recorder:
    """The archive's recorder, made on first use (writes go through its writer engine)."""
    rec = archive.__dict__.get("_last_access")
    if rec is None:
        with _MAKE_LOCK:
            rec = archive.__dict__.get("_last_access")
            if rec is None:
                rec = Recorder(archive._writer)  # type: ignore[attr-defined]
                archive.__dict__["_last_access"] = rec
    return rec


_MAKE_LOCK = threading.Lock()


def touch(archive: object, study_uid: str) -> None:
    """For ``Archive.read_instance``: note that ``study_uid`` was read."""
    rec = archive.__dict__.get("_last_access")
    (rec or recorder(archive)).touch(study_uid)


def close(archive: object) -> None:
    """For ``Archive.close``: write pending accesses (before the engine is disposed)."""
    rec = archive.__dict__.pop("_last_access", None)
    if rec is not None:
        rec.close()
