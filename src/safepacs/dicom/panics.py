"""Native codec panics as ordinary errors.

Several pixel codecs are written in Rust (pylibjpeg-rle, pylibjpeg-openjpeg) and answer some
damaged data by panicking.  pyo3 raises that as ``PanicException``, which derives from
``BaseException``: ``except Exception`` does not see it, and one damaged file would end a
whole ``safepacs deid`` run or a server request without its error answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class CodecPanic(Exception):
    """A native codec gave up on its input by panicking (the input is damaged)."""


@contextmanager
def panics_as_errors() -> Iterator[None]:
    """Re-raise a codec's panic inside the block as :class:`CodecPanic`; interrupts and
    exits pass through unchanged."""
    try:
        yield
    except (Exception, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - what is left: a native panic
        raise CodecPanic(f"the pixel codec failed on this data ({exc.__class__.__name__})") from None
