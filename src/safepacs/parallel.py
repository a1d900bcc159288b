"""Map a function over many inputs in forked worker processes, results in input order.

For work whose shared state is large and built once (``verify-deid``'s index of every
original's identifying values): the workers are forked after it is built, so they inherit
it without pickling, and only the inputs and the per-input results cross processes.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

#: the most processes a command may ask for (``--workers``)
MAX_WORKERS = 64


def ordered_map(fn: Callable[[In], Out], items: Iterable[In], workers: int = 1, *,
                initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> Iterator[Out]:
    """``map(fn, items)``, in up to ``workers`` processes (never more than there are items).

    ``fn`` must be a module-level function; it sees the state of this process at the moment
    of the call (the workers are forked then).  Where processes cannot be forked, or one
    worker is asked for, it runs here.  ``initializer(*initargs)`` runs first in each worker
    process (never here): for what must not be shared across a fork, such as a database
    connection.
    """
    items = list(items)
    workers = max(1, min(workers, MAX_WORKERS, len(items)))
    if workers == 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(fn, items)
        return
    from concurrent.futures import ProcessPoolExecutor

    # a few items at a time: fewer round trips, while one slow item (a file to OCR, ten
    # times the others) holds back at most three more behind it at the end
    chunk = max(1, min(4, len(items) // (workers * 16)))
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=initializer, initargs=initargs)
    try:
        yield from pool.map(fn, items, chunksize=chunk)
    finally:  # stopped early (an error, ^C): what has not started is dropped, not run
        pool.shutdown(wait=True, cancel_futures=True)
