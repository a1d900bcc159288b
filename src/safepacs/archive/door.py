"""The one place where an incoming object is de-identified.

Every ingest path (STOW-RS, C-STORE, import) goes through :func:`deidentify`, so changing
what the site does at the door (header profile today, pixel cleaning next) is one edit.
"""

from __future__ import annotations

from pydicom import Dataset

from safepacs.deid.delta import IdentityDelta
from safepacs.deid.engine import deidentify_inplace
from safepacs.deid.keys import Keys
from safepacs.deid.options import Options


def deidentify(ds: Dataset, options: Options, keys: Keys) -> IdentityDelta:
    """De-identify ``ds`` in place with the site's options and keys; returns the delta.

    Raises :class:`~safepacs.errors.InvalidDicom` or :class:`~safepacs.errors.RejectedFile`.
    """
    return deidentify_inplace(ds, options, keys)
