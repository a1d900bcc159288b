"""Keep freed memory for reuse in long-running processes (the server).

Every request of the archive allocates buffers of megabytes: a request body, a decrypted
object, a ciphertext, a rendered image.  glibc's malloc serves such sizes with fresh
``mmap`` regions and hands them back to the kernel on ``free``, so the next request writes
into pages the kernel must zero again, and that a virtual machine's host may have taken back
(free page reporting) and must fault in again.  Measured on the target VM: about an eighth
of STOW-RS ingest time and a good share of a retrieve's went to first touches of such pages.

Asking malloc to serve blocks up to 32 MiB from its heaps and to keep up to 1 GiB of freed
heap lets those buffers be reused instead; resident memory then stays at the busiest
moment's working set rather than falling back between requests.  Nothing changes where the
C library is not glibc, or where the operator set any ``MALLOC_*`` variable (theirs win), or
with ``SAFEPACS_MALLOC_TUNING=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

# mallopt(3) parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

#: the largest block served from the heap: glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
HEAP_BLOCK_MAX = 32 * 1024 * 1024
#: freed heap kept before any is returned to the kernel
KEEP_FREED = 1024 * 1024 * 1024
#: extra heap asked for at each growth, so a burst of big buffers grows it a few times only
TOP_PAD = 64 * 1024 * 1024

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Tune malloc as described above, once per process; True if it was tuned."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("SAFEPACS_MALLOC_TUNING", "1") == "0":
        return False
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False  # the operator tuned malloc already
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only (not musl)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_MMAP_THRESHOLD, HEAP_BLOCK_MAX),
            (_M_TRIM_THRESHOLD, KEEP_FREED),
            (_M_TOP_PAD, TOP_PAD),
        )
    )
    if not ok:
        log.warning("malloc tuning was refused by the C library; running with its defaults")
    _done = ok
    return ok
