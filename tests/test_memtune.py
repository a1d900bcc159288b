"""malloc tuning of the server process (safepacs.memtune), each case in a fresh interpreter:
the tuning is once per process and cannot be undone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# How much of a freshly allocated 16 MiB block glibc placed in its own mmap region
# (mallinfo2().hblkhd): all of it by default, none once big blocks come from the heap.
PROBE = """
import ctypes, sys
from safepacs.memtune import keep_freed_memory
tuned = keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
before = libc.mallinfo2().hblkhd
block = bytearray(16 * 1024 * 1024)
print(tuned, libc.mallinfo2().hblkhd - before >= 16 * 1024 * 1024)
"""


def _probe(**env: str) -> tuple[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "SAFEPACS_MALLOC"))}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    return out[0], out[1]


def _is_glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):
        return False


glibc = pytest.mark.skipif(not _is_glibc(), reason="glibc malloc only")


@glibc
def test_big_blocks_come_from_the_reusable_heap_once_tuned():
    assert _probe() == ("True", "False")


@glibc
def test_an_operator_can_turn_it_off():
    assert _probe(SAFEPACS_MALLOC_TUNING="0") == ("False", "True")


@glibc
def test_an_operators_own_malloc_settings_win():
    tuned, mapped = _probe(MALLOC_ARENA_MAX="2")
    assert (tuned, mapped) == ("False", "True")
