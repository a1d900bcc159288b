"""Keep pydicom from quoting element values on stderr and in logs.

pydicom checks each value against its VR when the value is first used and reports a
mismatch as a warning *and* a ``pydicom`` log record that quote it: ``Invalid value for
VR DA: '1980/05/12'`` is a birth date, ``Invalid value for VR AS: '45 years'`` an age.  Files
from the wild carry such values every day, so a ``safepacs deid`` run printed them and a
server wrote them to its log, next to nothing else identifying.

safepacs decides what a value may be by its own rules (de-identification removes or
replaces it whatever its form), so pydicom's warnings are not shown and any ``pydicom`` log
record has what it quotes masked (installed on ``import safepacs``), and its value checks
are switched off process-wide (by the modules that read datasets, on their import).
pynetdicom's records are masked alike in a server (``quiet_pynetdicom``).
"""

from __future__ import annotations

import logging
import re
import warnings

#: a quoted part of a message: 'x', "x", b'x' (what pydicom's messages put values in)
_QUOTED = re.compile(r"""b?'(?:[^'\\]|\\.)*'|b?"(?:[^"\\]|\\.)*\"""", re.DOTALL)


def mask_quoted(text: str) -> str:
    """``text`` with every quoted part replaced by ``'***'``."""
    return _QUOTED.sub("'***'", text)


class MaskQuoted(logging.Filter):
    """Masks what a record's message quotes; the record itself is kept (its level and
    source still say that something happened and where)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string: keep nothing of it
            message = "(unformattable message)"
        record.msg, record.args = mask_quoted(message), None
        if record.exc_info is not None or record.exc_text:
            # a traceback's exception message may quote a value as well
            record.exc_info, record.exc_text = None, None
            record.msg += " (traceback left out: it may quote a value)"
        return True


def quiet_pydicom() -> None:
    """Mask what pydicom's log records quote and hide its warnings; safe to call again.
    Needs no pydicom import (``import safepacs`` must not load numpy before the CLI has
    set up its environment)."""
    logger = logging.getLogger("pydicom")
    if not any(isinstance(f, MaskQuoted) for f in logger.filters):
        logger.addFilter(MaskQuoted())
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")


def quiet_pynetdicom() -> None:
    """Mask what pynetdicom's log records quote; safe to call again.  pynetdicom logs through
    one logger per module (a filter on ``pynetdicom`` itself never sees their records) and
    quotes values: ``Non-conformant 'Affected SOP Instance UID' value '1.2.246...'`` names
    the object a C-STORE carried before it was de-identified."""
    import pynetdicom  # noqa: F401 - creates its module loggers

    for name in list(logging.root.manager.loggerDict):
        if name == "pynetdicom" or name.startswith("pynetdicom."):
            logger = logging.getLogger(name)
            if not any(isinstance(f, MaskQuoted) for f in logger.filters):
                logger.addFilter(MaskQuoted())


def skip_value_checks() -> None:
    """Switch off pydicom's per-value VR checks (their messages are masked anyway; this
    saves the work and the noise).  Called by the modules that read datasets."""
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
