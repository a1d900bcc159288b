"""New files in folders that others may write to (an export share, /tmp).

A temp file opened by name with ``open(path, "w")`` follows a symbolic link planted at that
name and truncates whatever it points to, with this process's rights.  Temp names here are
predictable (``.NAME.<pid>.part``), so they are created with ``O_EXCL | O_NOFOLLOW``: never
through a link, never over an existing file.  A name already taken (a stale temp of a killed
run whose pid came round again, or a planted link) is unlinked, which removes the entry and
not what it points to, and the create is tried once more.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import IO, Any

_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def open_new(path: Path, mode: str = "wb", *, make_parents: bool = True, perm: int = 0o666,
             **kwargs: Any) -> IO[Any]:
    """``path`` created afresh (``perm``, less the umask, as with ``open``) and opened with
    ``mode`` ("wb" or "w"); its folders are made only when missing (most files land in a
    folder made for an earlier one)."""
    path = Path(path)
    try:
        fd = _create(path, perm)
    except FileNotFoundError:
        if not make_parents:
            raise
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _create(path, perm)
    return os.fdopen(fd, mode, **kwargs)


def _create(path: Path, perm: int) -> int:
    try:
        return os.open(path, _NEW, perm)
    except FileExistsError:
        path.unlink()
        return os.open(path, _NEW, perm)


#: errors that mean the file cannot have that size here: reported at once, before any byte
#: is written (no space, a quota, a file-size limit)
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _load_fallocate():  # type: ignore[no-untyped-def]
    """Linux's ``fallocate(2)``, which Python does not expose (``os.posix_fallocate`` is
    glibc's, and writes zeros into every block where the filesystem cannot allocate:
    twice the writing for a file that is written whole anyway)."""
    try:
        import ctypes

        call = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):  # not Linux (or no C library to ask)
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    call.restype = ctypes.c_int
    return call


_fallocate = _load_fallocate()


def reserve(fd: int, size: int, *, start: int = 0) -> None:
    """Allocate the disk for ``size`` bytes of the new file ``fd`` from ``start`` (its end)
    before writing them.

    A file copied in the kernel (``copy_file_range``) then needs no block reservation per
    page as it is written (on ext4 a fifth less system time for a header de-identification
    run), and a disk too full for the file fails here, before gigabytes are copied.  The
    file's size becomes ``start + size``.  Where the filesystem cannot preallocate, nothing
    is done (and not asked again in this process).
    """
    global _fallocate
    if _fallocate is None or size <= 0:
        return
    if _fallocate(fd, 0, start, size) == 0:
        return
    import ctypes

    err = ctypes.get_errno()
    if err in _NO_ROOM:
        raise OSError(err, os.strerror(err))
    if err != errno.EINTR:
        _fallocate = None  # this filesystem (or kernel) cannot: plain writes
