"""Defer loading the optional modules pydicom imports only to probe what is installed.

``import pydicom`` pulls in its example-data downloader (``requests``, ``tqdm``,
``urllib.request``: HTTP, SSL, e-mail parsing), about a tenth of a
second before the first file is touched.  Header de-identification never uses
them, and a ``safepacs deid`` run over a few hundred files pays that start-up once per
process, so it shows in files/s.  Each such module is registered as a stand-in that loads
the real module on first attribute access, so anything that does use it still gets it,
whole and unchanged.  Missing modules stay missing (``import`` still raises).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

#: imported by pydicom at start-up but used only by its example-data downloader (numpy
#: is not here: pydicom's pylibjpeg plugin probe loads it anyway)
OPTIONAL = ("requests", "tqdm", "urllib.request")


class _Deferred(types.ModuleType):
    """A module that becomes the real one on first use of any attribute it lacks."""

    def __getattr__(self, attr: str):  # type: ignore[no-untyped-def]
        real = _load(self)
        return getattr(real, attr)


def _load(stand_in: types.ModuleType) -> types.ModuleType:
    name = stand_in.__name__
    if sys.modules.get(name) is stand_in:
        del sys.modules[name]
    real = importlib.import_module(name)
    # later look-ups through the stand-in (held by modules that imported it) hit its dict
    stand_in.__dict__.update(real.__dict__)
    return real


def defer(names: tuple[str, ...] = OPTIONAL) -> None:
    """Register stand-ins for ``names`` that are installed and not loaded yet.

    Call before ``import pydicom``; a no-op for modules already loaded.
    """
    for name in names:
        if name in sys.modules:
            continue
        parent, _, child = name.rpartition(".")
        try:
            # imports a submodule's package (``urllib``: an empty one; pathlib loads it
            # anyway), so that the stand-in can be set on it as the real module would be
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        stand_in = _Deferred(name)
        stand_in.__spec__ = spec
        stand_in.__loader__ = spec.loader
        if spec.submodule_search_locations is None:
            stand_in.__file__ = spec.origin
        sys.modules[name] = stand_in
        if parent:
            setattr(sys.modules[parent], child, stand_in)
