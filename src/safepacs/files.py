"""New files in folders that others may write to (an export share, /tmp).

A temp file opened by name with ``open(path, "w")`` follows a symbolic link planted at that
name and truncates whatever it points to, with this process's rights.  Temp names here are
predictable (``.NAME.<pid>.part``), so they are created with ``O_EXCL | O_NOFOLLOW``: never
through a link, never over an existing file.  A name already taken (a stale temp of a killed
run whose pid came round again, or a planted link) is unlinked, which removes the entry and
not what it points to, and the create is tried once more.
"""

from __future__ import annotations

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
