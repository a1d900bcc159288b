"""Intel ISA-L's GF(2^8) kernels, for :mod:`safepacs.store.erasure` (optional, via ctypes).

zfec multiplies byte by byte through a lookup table (about 0.8 GB/s of message here); ISA-L
does the same arithmetic with SIMD (tens of GB/s).  Both use the field GF(2^8) modulo
x^8+x^4+x^3+x^2+1 and a linear code is fixed by its coefficient matrix, so ISA-L given
zfec's own matrix writes byte-identical parity: the stored format does not depend on which
of the two computed it.  :mod:`erasure` checks that identity against zfec before it uses
this module, and uses zfec alone when the library (Debian/Ubuntu ``libisal2``) is missing.

Only plain memory crosses the boundary: addresses of buffers that the caller keeps alive
for the call, lengths checked here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import numpy as np

#: ISA-L takes lengths as C ints: longer shards are coded in column stripes of this size
_MAX_LEN = 1 << 30
_P = ctypes.c_void_p


def _load() -> ctypes.CDLL | None:
    if os.environ.get("SAFEPACS_NO_ISAL"):
        return None
    name = ctypes.util.find_library("isal")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.ec_init_tables.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p]
        lib.ec_init_tables.restype = None
        lib.ec_encode_data.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                       ctypes.POINTER(_P), ctypes.POINTER(_P)]
        lib.ec_encode_data.restype = None
        lib.gf_invert_matrix.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        lib.gf_invert_matrix.restype = ctypes.c_int
    except (OSError, AttributeError):  # not ISA-L after all, or too old
        return None
    return lib


_LIB = _load()


def available() -> bool:
    return _LIB is not None


def tables(matrix: bytes, rows: int, k: int) -> bytes:
    """ISA-L's expanded tables for a ``rows`` x ``k`` coefficient matrix (row-major)."""
    if _LIB is None:
        raise RuntimeError("ISA-L is not available")
    if len(matrix) != rows * k:
        raise ValueError("matrix size does not match rows x k")
    out = ctypes.create_string_buffer(32 * k * rows)
    _LIB.ec_init_tables(k, rows, matrix, out)
    return out.raw


def apply(tbls: bytes, rows: int, inputs: list, size: int) -> list[bytearray]:  # type: ignore[type-arg]
    """``rows`` new shards, each the GF(2^8) combination of ``inputs`` (k bytes-like objects
    of ``size`` bytes) that ``tbls`` (from :func:`tables`) describes."""
    if _LIB is None:
        raise RuntimeError("ISA-L is not available")
    k = len(inputs)
    if len(tbls) != 32 * k * rows:
        raise ValueError("tables do not match rows x k")
    arrays = [np.frombuffer(buf, dtype=np.uint8) for buf in inputs]  # read-only views, no copy
    if any(a.size != size for a in arrays):
        raise ValueError("every input must hold exactly size bytes")
    outs = [bytearray(size) for _ in range(rows)]
    out_arrays = [np.frombuffer(o, dtype=np.uint8) for o in outs]
    src_base = [a.ctypes.data for a in arrays]
    dst_base = [a.ctypes.data for a in out_arrays]
    for start in range(0, size, _MAX_LEN):
        length = min(_MAX_LEN, size - start)
        src = (_P * k)(*[b + start for b in src_base])
        dst = (_P * rows)(*[b + start for b in dst_base])
        _LIB.ec_encode_data(length, k, rows, tbls, src, dst)  # ctypes drops the GIL here
    del arrays, out_arrays
    return outs


def invert(matrix: bytes, k: int) -> bytes | None:
    """The inverse of a k x k matrix over GF(2^8), or None when it is singular."""
    if _LIB is None:
        raise RuntimeError("ISA-L is not available")
    if len(matrix) != k * k:
        raise ValueError("matrix must be k x k")
    scratch = ctypes.create_string_buffer(bytes(matrix), k * k)
    out = ctypes.create_string_buffer(k * k)
    if _LIB.gf_invert_matrix(scratch, out, k) != 0:
        return None
    return out.raw
