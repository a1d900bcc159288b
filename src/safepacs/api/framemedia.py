"""Which encoding a WADO-RS ``/frames`` request gets, from its Accept header.

Frames travel without a header of their own: the client reads the bytes by the part's
media type and transfer syntax.  A client that asks for ``application/octet-stream``
without naming a transfer syntax (dicomweb-client's default) asks, by PS3.18, for Explicit
VR Little Endian, and would read compressed bytes as pixel values.  So a stored compressed
(or big endian) object's frames are sent as stored only to a client that accepts that
syntax or any (``*/*``, ``transfer-syntax=*``, the matching ``image/...`` type), decoded to
native little endian for one that asks for uncompressed frames, and refused (406)
otherwise.  No transcoding into another compression.  The media type table is data
(``data/frame_media_types.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from safepacs.api.multipart import media_type

OCTET = "application/octet-stream"
#: transfer syntaxes whose pixel data is native little endian (deflate compresses the
#: data set, not the pixel values)
_NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"}


@dataclass(frozen=True)
class FrameReply:
    """How to answer: each part's media type and transfer syntax, and whether the frames
    must be decoded to native little endian values first."""

    media_type: str
    transfer_syntax: str
    decode: bool


@cache
def _table() -> dict:
    text = resources.files("safepacs.api").joinpath("data/frame_media_types.json").read_text("utf-8")
    return json.loads(text)


def stored_media_type(stored: str) -> str:
    """The media type of frames sent in the stored transfer syntax."""
    for kind, syntaxes in _table()["compressed"].items():
        if stored in syntaxes:
            return kind
    return OCTET


def negotiate(accept: str | None, stored: str) -> FrameReply | None:
    """The reply for frames stored in ``stored`` to a request with ``accept``; None when
    nothing acceptable can be sent (406).  Sending as stored wins when the client takes it
    (no work, no change); otherwise native little endian if the client asks for it."""
    as_stored = FrameReply(stored_media_type(stored), stored, False)
    if not accept or not accept.strip():
        return as_stored
    table = _table()
    native: FrameReply | None = None
    for item in accept.split(","):
        kind, params = media_type(item)
        if not kind:
            continue
        inner = params.get("type", OCTET).lower() if kind == "multipart/related" else kind
        wanted = params.get("transfer-syntax")
        if inner in ("*/*", "multipart/*"):
            return as_stored
        if inner == OCTET:
            wanted = wanted or table["uncompressed_default"]
            if wanted in ("*", stored):
                return FrameReply(OCTET, stored, False)
            if wanted in table["uncompressed_little_endian"] and native is None:
                native = FrameReply(OCTET, wanted, stored not in _NATIVE_LE)
        elif inner == "image/*" and as_stored.media_type != OCTET:
            return as_stored
        elif stored in table["compressed"].get(inner, ()) and wanted in (None, "*", stored):
            return FrameReply(inner, stored, False)
    return native
