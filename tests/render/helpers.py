"""Objects as the archive holds them: original -> (stored de-identified bytes, delta bytes)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
from pydicom import Dataset

from safepacs.archive import door
from safepacs.deid.keys import Keys
from safepacs.deid.options import Options
from safepacs.dicom import memio
from safepacs.render.render import RenderContext, project_key

ARCHIVE_KEYS = Keys(bytes(range(100, 132)))
SITE_SECRET = bytes(range(32))
WATERMARK_KEY = bytes(range(50, 82))


def through_door(original: bytes) -> tuple[bytes, bytes]:
    """What the archive stores for ``original``: (de-identified Part 10, delta plaintext)."""
    parsed = memio.parse(original)
    delta = door.deidentify(parsed, Options(), ARCHIVE_KEYS)
    return memio.serialise(parsed), delta.to_bytes()


def read(data: bytes | Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data) if isinstance(data, bytes) else data)


def context(project: str = "P", serial: int | None = 7, **kw) -> RenderContext:
    return RenderContext(project_key=project_key(SITE_SECRET, project), serial=serial,
                         watermark_key=WATERMARK_KEY, **kw)


def walk_values(ds: Dataset, vrs: tuple[str, ...] | None = None, meta: bool = True) -> list[tuple[int, str, object]]:
    """(tag, VR, value) of every element at every depth (file meta too)."""
    found = []

    def visit(node: Dataset) -> None:
        for elem in node:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif vrs is None or elem.VR in vrs:
                found.append((int(elem.tag), elem.VR, elem.value))

    visit(ds)
    if meta and getattr(ds, "file_meta", None) is not None:
        visit(ds.file_meta)
    return found


def uids(ds: Dataset) -> set[str]:
    """Every UID value that is not a registry UID (SOP classes, transfer syntaxes, ...)."""
    from pydicom.uid import UID_dictionary

    out = set()
    for tag, _, value in walk_values(ds, ("UI",)):
        if tag == 0x00020012:  # ImplementationClassUID: the software, not the data
            continue
        for v in value if isinstance(value, list | tuple) or hasattr(value, "append") else [value]:
            if v and str(v) not in UID_dictionary:
                out.add(str(v))
    return out
