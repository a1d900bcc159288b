"""HTTP front of the archive: DICOMweb (PS3.18) routes over ``safepacs.archive`` services."""

from safepacs.api.app import create_app

__all__ = ["create_app"]
