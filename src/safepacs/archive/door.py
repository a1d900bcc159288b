"""The one place where an incoming object is de-identified.

Every ingest path (STOW-RS, C-STORE, import) goes through :func:`deidentify`, so what the
site does at the door is the same as ``safepacs deid`` does to a file: the header profile,
then Clean Pixel Data when the object may carry burned-in text (or always, by the site's
options).  The pixel patches it removes go into the same identity delta as the header values.
"""

from __future__ import annotations

from safepacs.deid.batch import (
    clean_file_pixels,
    has_pixel_data,
    original_header,
    should_clean_pixels,
)
from safepacs.deid.delta import IdentityDelta
from safepacs.deid.engine import deidentify_inplace
from safepacs.deid.keys import Keys
from safepacs.deid.mislabelled import read_as_written
from safepacs.deid.options import Options
from safepacs.deid.pixels.frames import PixelError
from safepacs.dicom.memio import Parsed
from safepacs.errors import InvalidDicom, RejectedFile


def deidentify(parsed: Parsed, options: Options, keys: Keys) -> IdentityDelta:
    """De-identify ``parsed.dataset`` in place with the site's options and keys; returns the
    delta.  When pixels were cleaned, ``parsed`` is told so and its dataset holds them.

    Raises :class:`~safepacs.errors.InvalidDicom` or :class:`~safepacs.errors.RejectedFile`.
    """
    ds = parsed.dataset
    read_as_written(ds)  # before any value is read (the original header's included)
    if not should_clean_pixels(parsed, options):  # type: ignore[arg-type]
        # without pixel data nothing can be burned in
        return deidentify_inplace(ds, options, keys, pixels_cleaned=not has_pixel_data(parsed))  # type: ignore[arg-type]
    original = original_header(ds)
    delta = deidentify_inplace(ds, options, keys, pixels_cleaned=True)
    try:
        clean_file_pixels(parsed, original, delta, options)  # type: ignore[arg-type]
    except (RejectedFile, InvalidDicom):
        raise
    except PixelError as exc:  # its message names the problem, never a value
        raise RejectedFile(str(exc)) from None
    except Exception as exc:  # PixelError and decoder failures: refuse, never store uncleaned
        raise RejectedFile(f"pixel data cannot be cleaned ({exc.__class__.__name__})") from None
    if any(tag >> 16 == 0x7FE0 for tag in ds.keys()):
        parsed.pixels_replaced()
    return delta
