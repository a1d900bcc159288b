"""multipart/related framing (RFC 2046, RFC 2387) for STOW-RS requests and WADO-RS responses.

The parser is incremental (``feed`` chunks as they arrive) so a request is never held twice,
and strict: a body that ends before its close delimiter, a missing or malformed boundary, an
oversized part or header block, or a declared ``Content-Length`` that is not what arrived is
an error.  Nothing is ingested until the whole body has parsed, so a truncated upload stores
nothing.  Error messages describe the framing only, never part contents.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

CRLF = b"\r\n"
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
MAX_HEADER_BYTES = 16 * 1024


class MultipartError(ValueError):
    """The body is not well-formed multipart; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Part:
    """One body part: lower-cased header names, the raw bytes of its content."""

    headers: dict[str, str]
    content: bytes

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("content-type")
        return media_type(value)[0] if value else None


def media_type(value: str) -> tuple[str, dict[str, str]]:
    """Split ``type/subtype; a=b; c="d"`` into the lower-cased type and its parameters."""
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for m in re.finditer(r'\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)\s*;?', rest):
        raw = m.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[m.group(1).lower()] = raw
    return head.strip().lower(), params


def boundary_of(content_type: str | None) -> tuple[str, dict[str, str]]:
    """The boundary of a ``multipart/related`` request, after checking the media type."""
    if not content_type:
        raise MultipartError("missing Content-Type; expected multipart/related", 415)
    kind, params = media_type(content_type)
    if kind != "multipart/related":
        raise MultipartError("Content-Type must be multipart/related", 415)
    boundary = params.get("boundary")
    if not boundary:
        raise MultipartError("multipart/related without a boundary parameter")
    if not _BOUNDARY.match(boundary):
        raise MultipartError("malformed multipart boundary")
    return boundary, params


class Parser:
    """Incremental multipart parser: ``feed`` returns the parts completed so far."""

    def __init__(self, boundary: str, *, max_part_bytes: int, max_parts: int = 100_000) -> None:
        self._delim = CRLF + b"--" + boundary.encode("ascii")
        self._search = re.compile(re.escape(self._delim)).search  # faster than find on binary data
        self._remaining: int | None = None  # bytes still due of a part that declared its length
        self._scan = 0  # where the delimiter search resumes in the buffer
        # The first delimiter may start the body; pretend a CRLF precedes it.
        self._buf = bytearray(CRLF)
        self._state = "preamble"
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_len = 0
        self._max_part = max_part_bytes
        self._max_parts = max_parts
        self._count = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, chunk: bytes) -> list[Part]:
        if self._state == "done":
            return []  # epilogue: ignored
        if self._state == "body" and self._remaining and not self._buf:
            # Declared length: take the part's bytes straight from the chunk, no search, no copy.
            n = min(self._remaining, len(chunk))
            self._add(chunk if n == len(chunk) else chunk[:n])
            self._remaining -= n
            chunk = chunk[n:]
            if not chunk:
                return []
        self._buf += chunk
        return list(self._drain())

    def _add(self, piece: bytes) -> None:
        self._body_len += len(piece)
        if self._body_len > self._max_part:
            raise MultipartError("multipart part larger than this server accepts", 413)
        self._body.append(piece)

    def close(self) -> None:
        """Raise unless the close delimiter was seen."""
        if self._state != "done":
            raise MultipartError("truncated multipart body (no closing boundary)")
        if self._count == 0:
            raise MultipartError("multipart body without any part")

    def _drain(self) -> Iterator[Part]:
        while True:
            if self._state == "preamble":
                m = self._search(self._buf)
                i = m.start() if m else -1
                if i < 0:
                    keep = len(self._delim) - 1
                    if len(self._buf) > MAX_HEADER_BYTES + keep:
                        raise MultipartError("multipart boundary not found")
                    return
                del self._buf[: i + len(self._delim)]
                self._state = "after-delim"
            elif self._state == "after-delim":
                if len(self._buf) < 2:
                    return
                if self._buf[:2] == b"--":
                    self._state = "done"
                    self._buf.clear()
                    return
                j = self._buf.find(CRLF)
                if j < 0:
                    if len(self._buf) > 256:
                        raise MultipartError("malformed multipart delimiter line")
                    return
                if self._buf[:j].strip(b" \t"):
                    raise MultipartError("malformed multipart delimiter line")
                del self._buf[: j + 2]
                self._state = "headers"
            elif self._state == "headers":
                if self._buf[:2] == CRLF:
                    block, cut = b"", 2
                else:
                    k = self._buf.find(CRLF + CRLF)
                    if k < 0:
                        if len(self._buf) > MAX_HEADER_BYTES:
                            raise MultipartError("multipart part headers too long", 431)
                        return
                    block, cut = bytes(self._buf[:k]), k + 4
                self._headers = _parse_headers(block)
                self._remaining = self._check_declared_length()
                del self._buf[:cut]
                self._body, self._body_len, self._scan = [], 0, 0
                self._state = "body"
            elif self._state == "body" and self._remaining is not None:
                if self._remaining:
                    n = min(self._remaining, len(self._buf))
                    if n == 0:
                        return
                    self._take(n)
                    self._remaining -= n
                    continue
                if len(self._buf) < len(self._delim):
                    return
                if not self._buf.startswith(self._delim):
                    raise MultipartError("multipart part length differs from its Content-Length")
                del self._buf[: len(self._delim)]
                self._remaining = None
                yield self._finish_part()
                self._state = "after-delim"
            elif self._state == "body":
                # No declared length: the part grows in the buffer, only new bytes are searched.
                m = self._search(self._buf, self._scan)
                if m is None:
                    self._scan = max(0, len(self._buf) - len(self._delim) + 1)
                    if len(self._buf) > self._max_part + len(self._delim):
                        raise MultipartError("multipart part larger than this server accepts", 413)
                    return
                i = m.start()
                if i > self._max_part:
                    raise MultipartError("multipart part larger than this server accepts", 413)
                self._take(i)
                del self._buf[: len(self._delim)]
                yield self._finish_part()
                self._state = "after-delim"

    def _take(self, n: int) -> None:
        with memoryview(self._buf) as view:
            piece = bytes(view[:n])
        self._add(piece)
        del self._buf[:n]

    def _check_declared_length(self) -> int | None:
        declared = self._headers.get("content-length")
        if declared is None:
            return None
        if not declared.strip().isdigit():
            raise MultipartError("malformed Content-Length in a multipart part")
        if int(declared) > self._max_part:
            raise MultipartError("multipart part declares a length larger than this server accepts", 413)
        return int(declared)

    def _finish_part(self) -> Part:
        content = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body = []
        declared = self._headers.get("content-length")
        if declared is not None and int(declared) != len(content):
            raise MultipartError("multipart part length differs from its Content-Length")
        self._count += 1
        if self._count > self._max_parts:
            raise MultipartError("too many parts in one request", 413)
        return Part(self._headers, content)


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    if not block:
        return headers
    try:
        text = block.decode("ascii")
    except UnicodeDecodeError:
        raise MultipartError("non-ASCII bytes in multipart part headers") from None
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or name != name.strip():
            raise MultipartError("malformed multipart part header")
        headers[name.lower()] = value.strip()
    return headers


def parse(body: bytes, boundary: str, *, max_part_bytes: int) -> list[Part]:
    """Parse a whole body at once (tests, small requests)."""
    p = Parser(boundary, max_part_bytes=max_part_bytes)
    parts = p.feed(body)
    p.close()
    return parts


def part_header(content_type: str, length: int, extra: dict[str, str] | None = None) -> bytes:
    lines = [f"Content-Type: {content_type}", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def encode(parts: Iterator[tuple[str, bytes]], boundary: str) -> Iterator[bytes]:
    """Yield the framing and the (uncopied) contents of ``(content_type, bytes)`` parts."""
    b = boundary.encode("ascii")
    for content_type, content in parts:
        yield b"--" + b + CRLF + part_header(content_type, len(content))
        yield content
        yield CRLF
    yield b"--" + b + b"--" + CRLF
