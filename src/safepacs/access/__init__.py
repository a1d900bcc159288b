"""Who may see what: accounts, authentication, separated administrator roles, grants,
the policy that turns them into access levels, break-glass and multi-party approvals.

``AccessControl`` (service.py) is the one entry point the API, DIMSE and CLI layers call.
This package's ``__init__`` stays light: ``safepacs.index.models`` imports our tables.
"""

from __future__ import annotations

from typing import Any

from safepacs.access.principal import ADMIN_ROLES, DATA_ROLES, Decision, Principal

__all__ = ["ADMIN_ROLES", "DATA_ROLES", "Decision", "Principal", "bootstrap"]


def bootstrap(engine: Any, keys_dir: Any, **kwargs: Any) -> dict[str, tuple[str, str]]:
    """See :func:`safepacs.access.initial.bootstrap` (imported lazily)."""
    from safepacs.access.initial import bootstrap as _bootstrap

    return _bootstrap(engine, keys_dir, **kwargs)
