"""safepacs: a privacy-first medical imaging archive."""

from safepacs.dicom.deferred import defer as _defer
from safepacs.dicom.quiet import quiet_pydicom as _quiet_pydicom

__version__ = "0.1.0"

# before anything imports pydicom: its example-data downloader loads only if used
_defer()
# pydicom's warnings and log records quote element values: see safepacs.dicom.quiet
_quiet_pydicom()
