"""Blob stores: one narrow interface (put/get/delete/list), a local folder and S3.

Blobs are opaque ciphertext named by random identifiers, never by anything in the object.
``put`` returns only once the blob is durable, which is what lets the archive commit its
index row afterwards and still survive a crash at any point (see ``archive.recovery``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import mmap
import os
import queue
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlparse

from safepacs.errors import SafepacsError

_TMP = ".tmp"
#: folder fsyncs and second blobs of a put_many, alongside the caller's own write: they
#: wait on the disk, and several puts run at once (a split store's n node writes each)
_HELPERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="safepacs-blob")

#: What ``put`` takes: one bytes-like object, or a tuple of them stored back to back (so a
#: shard's header and body reach the disk without first being joined into a copy).
Blob = bytes | bytearray | memoryview | tuple[bytes | bytearray | memoryview, ...]

#: Blobs at least this big (radiographs, multi-frame objects, shards of them) are written
#: with O_DIRECT by default: the device reads them straight from an aligned staging buffer
#: that is reused, so no page-cache memory is allocated for them.  On the target VM that
#: decides ingest: freed memory goes back to the host within seconds (free page reporting)
#: and every fresh page-cache page is then faulted in afresh, which made buffered writes the
#: larger part of an ingest's time (STOW-RS of the archive benchmark: 31-38 instances/s
#: with streamed page-cache writes against 47-57 with O_DIRECT, same runs; on a server whose
#: memory is full of cache, each fresh page costs a reclaim instead).  A bulk ingest also
#: no longer evicts what readers had cached.  The price: a blob's first view is read from
#: disk (an 8 MB cold read took 7-14 ms here; the benchmark's radiograph retrieve p50 was
#: 23.8 ms against 21.5-22.9 ms with streamed writes).  ``write="stream"`` writes 1 MiB
#: chunks into the page cache, starting each one's writeback at once (``sync_file_range``),
#: and keeps the blob cached; ``write="buffered"`` is one plain write.  fsync always follows
#: (file size, block allocation, the device's own cache).  Smaller blobs (identity deltas,
#: CT and MR slices) are one buffered write.
DIRECT_MIN = 2 << 20
_ALIGN = 4096  # covers 512- and 4096-byte logical blocks
_CHUNK = 4 << 20
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_STAGING: queue.Queue[mmap.mmap] = queue.Queue(maxsize=8)
_WILLNEED = getattr(mmap, "MADV_WILLNEED", None)
_STREAM_CHUNK = 1 << 20  # 1 MiB per sync_file_range: 4 MiB chunks were less steady here
WRITE_MODES = ("direct", "stream", "buffered")


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    """``sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE)`` from the C library
    (Linux; Python's os module has no binding), or None where it is missing."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def start_writeback(fd: int, offset: int, count: int) -> None:
        if fn(fd, offset, count, 2) != 0:  # 2: SYNC_FILE_RANGE_WRITE (start, do not wait)
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return start_writeback


_sync_file_range = _load_sync_file_range() if sys.platform.startswith("linux") else None


class StoreError(SafepacsError):
    """The blob store cannot be reached or refused an operation."""


class BlobNotFound(StoreError):
    """No blob of that name."""


class BlobStore(Protocol):
    """Where sealed blobs live."""

    def put(self, name: str, data: Blob) -> None:
        """Store ``data`` durably under ``name`` (returns only when it would survive a crash)."""
        ...

    def put_many(self, items: list[tuple[str, Blob]]) -> None:
        """Store several blobs durably (one folder sync when they share a folder)."""
        ...

    def get(self, name: str) -> bytes:
        """The blob, as a read-only bytes-like object."""
        ...

    def delete(self, name: str) -> None:
        """Remove ``name``; absent is fine."""
        ...

    def names(self) -> Iterator[str]:
        """Every stored blob name."""
        ...

    def clean_temp(self) -> int:
        """Remove half-written blobs left by a crash; returns how many."""
        ...

    def usage(self) -> int:
        """Bytes stored."""
        ...

    def healthy(self) -> bool: ...


def new_names(*kinds: str) -> list[str]:
    """Fresh random blob names sharing one identifier and folder: ``ab/<32 hex>.<kind>``."""
    ident = uuid.uuid4().hex
    return [f"{ident[:2]}/{ident}.{kind}" for kind in kinds]


#: what :func:`new_names` makes, and so the only names the archive may delete unasked
OWN_NAME = re.compile(r"([0-9a-f]{2})/\1[0-9a-f]{30}\.[a-z]+")


def _is_folder(name: str) -> bool:
    """One of a store's 256 folders (``00``..``ff``): the layout, whatever else lies beside."""
    return len(name) == 2 and all(c in "0123456789abcdef" for c in name)


def _check_name(name: str) -> str:
    parts = name.split("/")
    if len(parts) != 2 or not all(p and p not in (".", "..") for p in parts) or not name.isascii():
        raise StoreError("invalid blob name")
    return name


class LocalStore:
    """A folder: ``ROOT/ab/<name>``.  A blob is written under its final name (created
    exclusively) and fsynced, and its folder fsynced, all at once: ``put_many`` returns
    only when every blob is durable.  A crash mid-write can leave a partial blob, but under
    a name no index row holds yet (the archive commits rows only after ``put_many``
    returned), and crash recovery removes exactly those: no temporary file and rename is
    needed, which saves a journal commit per blob.  ``ROOT/.tmp`` is still cleaned (older
    versions wrote there).

    Big blobs (see :data:`DIRECT_MIN`) are written as ``write`` says: ``"direct"`` (the
    default: O_DIRECT where the file system allows it), ``"stream"`` or ``"buffered"``;
    ``direct=True/False`` is the older spelling of ``"direct"``/``"buffered"``.  A mode the
    platform or file system lacks falls back to buffered writes."""

    #: the URL it was opened from (set by :func:`open_store`), to write back into settings
    url: str | None = None

    def __init__(self, root: Path, *, write: str | None = None, direct: bool | None = None) -> None:
        if write is None:
            write = "direct" if direct is None or direct else "buffered"
        if write not in WRITE_MODES:
            raise StoreError(f"file store: write must be one of {', '.join(WRITE_MODES)}")
        self.root = Path(root)
        self.direct = write == "direct" and bool(_O_DIRECT)
        self.stream = write == "stream" and _sync_file_range is not None
        (self.root / _TMP).mkdir(parents=True, exist_ok=True)
        # All 256 folders up front, with one sync of the root: created lazily, the first blob
        # of each folder paid an extra serial fsync of the root.
        created = False
        for i in range(256):
            folder = self.root / f"{i:02x}"
            if not folder.is_dir():
                folder.mkdir(exist_ok=True)
                created = True
        if created:
            fsync_dir(self.root)

    def _path(self, name: str) -> Path:
        return self.root / _check_name(name)

    def location(self) -> str:
        """Where the blobs are, the same for two stores on one folder (however named)."""
        return f"file://{self.root.resolve()}"

    def put(self, name: str, data: Blob) -> None:
        self.put_many([(name, data)])

    def put_many(self, items: list[tuple[str, Blob]]) -> None:
        if not items:
            return
        finals = [self._path(name) for name, _ in items]
        folders = {f.parent for f in finals}
        for folder in folders:
            if not folder.is_dir():
                folder.mkdir(exist_ok=True)
                fsync_dir(self.root)
        fds: list[tuple[Path, int]] = []
        try:
            for final in finals:  # never over an existing blob
                fds.append((final, os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)))
        except BaseException:
            _discard(fds)
            raise
        # Every name now exists, so the folders' fsyncs, the other blobs (an identity delta)
        # and the first blob are all made durable at once: helper threads take the first two,
        # this thread the first blob, and the file system commits them together.
        side = [_HELPERS.submit(fsync_dir, folder) for folder in folders]
        side += [_HELPERS.submit(self._write, fd, data) for (_, data), (_, fd) in zip(items[1:], fds[1:], strict=True)]
        errors: list[BaseException] = []
        try:
            self._write(fds[0][1], items[0][1])
        except BaseException as exc:
            errors.append(exc)
        for future in side:
            try:
                future.result()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            _discard(fds)
            raise errors[0]
        for _, fd in fds:
            os.close(fd)

    def get(self, name: str) -> bytes:
        """A read-only memory map of the blob (no copy; blobs are never modified in place,
        only replaced or unlinked, so the mapping stays valid)."""
        try:
            with open(self._path(name), "rb") as fh:
                if os.fstat(fh.fileno()).st_size == 0:
                    return b""
                mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise BlobNotFound("blob not found") from None
        # The whole blob is about to be read (decrypted, hashed): ask for it in one go rather
        # than page fault by page fault (about 1.3x on a cold read here).
        if _WILLNEED is not None:
            mapped.madvise(_WILLNEED)
        return mapped  # type: ignore[return-value]

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"file store: cannot delete a blob ({exc.__class__.__name__})") from None

    def names(self) -> Iterator[str]:
        """The files in the 256 folders.  Anything else under the root (a folder someone
        copied in, a link, a subfolder) is not a blob: never listed, so never read,
        counted or deleted."""
        for folder in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not _is_folder(folder.name) or not folder.is_dir(follow_symlinks=False):
                continue
            for entry in sorted(os.scandir(folder.path), key=lambda e: e.name):
                if entry.is_file(follow_symlinks=False):
                    yield f"{folder.name}/{entry.name}"

    def clean_temp(self) -> int:
        """Remove the files in ``ROOT/.tmp``; one that cannot be removed is left (the
        archive still opens)."""
        count = 0
        for entry in os.scandir(self.root / _TMP):
            if not entry.is_file(follow_symlinks=False) and not entry.is_symlink():
                continue
            try:
                os.unlink(entry.path)
            except OSError:
                continue
            count += 1
        return count

    def usage(self) -> int:
        return sum((self.root / n).stat().st_size for n in self.names())

    def healthy(self) -> bool:
        return os.access(self.root / _TMP, os.W_OK)

    def _write(self, fd: int, data: Blob) -> None:
        """All of ``data`` into the new, empty file ``fd``, then fsync."""
        views = _views(data)
        big = sum(v.nbytes for v in views) >= DIRECT_MIN
        if self.direct and big:
            try:
                _set_direct(fd, True)
                _write_direct(fd, views)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # The file system refuses direct I/O (tmpfs, some network or FUSE mounts) or
                # its alignment: start the file over, buffered, and stop trying here.
                self.direct = False
                _set_direct(fd, False)
                _rewrite_buffered(fd, views)
        elif self.stream and big:
            try:
                _write_streamed(fd, views)
            except OSError as exc:
                if exc.errno not in (errno.ENOSYS, errno.EINVAL, errno.ESPIPE):
                    raise
                # No early writeback here (an old kernel, a file system without it): the
                # blob starts over as one plain write, and stops trying here.
                self.stream = False
                _rewrite_buffered(fd, views)
        else:
            _write_buffered(fd, views)
        os.fsync(fd)


def _views(data: Blob) -> list[memoryview]:
    return [memoryview(p).cast("B") for p in (data if isinstance(data, tuple) else (data,))]


def _write_buffered(fd: int, views: list[memoryview]) -> None:
    for view in views:
        while view:
            view = view[os.write(fd, view) :]


def _write_streamed(fd: int, views: list[memoryview]) -> None:
    """Write ``views`` in 1 MiB chunks, starting each chunk's writeback as soon as it is in
    the page cache (see :data:`DIRECT_MIN`)."""
    assert _sync_file_range is not None
    offset = 0
    for view in views:
        while view:
            chunk = view[: _STREAM_CHUNK - offset % _STREAM_CHUNK]
            start = offset
            while chunk:
                done = os.write(fd, chunk)
                chunk, view, offset = chunk[done:], view[done:], offset + done
            _sync_file_range(fd, start, offset - start)


def _rewrite_buffered(fd: int, views: list[memoryview]) -> None:
    """Drop whatever a failed write left in ``fd`` and write ``views`` plainly."""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    _write_buffered(fd, views)


def _set_direct(fd: int, on: bool) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)


def _write_direct(fd: int, views: list[memoryview]) -> None:
    """Copy ``views`` chunk by chunk into an aligned staging buffer and write each chunk
    with O_DIRECT; the last chunk is zero-padded to the alignment and the file cut back to
    the blob's size (before the caller's fsync, so the padding never counts as data)."""
    try:
        stage = _STAGING.get_nowait()
    except queue.Empty:
        stage = mmap.mmap(-1, _CHUNK)  # anonymous: page-aligned
    try:
        buf = memoryview(stage)
        fill = offset = 0
        for view in views:
            while view:
                n = min(view.nbytes, _CHUNK - fill)
                buf[fill : fill + n] = view[:n]
                fill, view = fill + n, view[n:]
                if fill == _CHUNK:
                    _pwrite_all(fd, buf, offset)
                    offset, fill = offset + fill, 0
        if fill:
            padded = -(-fill // _ALIGN) * _ALIGN
            buf[fill:padded] = bytes(padded - fill)
            _pwrite_all(fd, buf[:padded], offset)
            if padded != fill:
                os.ftruncate(fd, offset + fill)
    finally:
        try:
            _STAGING.put_nowait(stage)
        except queue.Full:
            pass  # unmapped when the last view of it goes


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def _discard(fds: list[tuple[Path, int]]) -> None:
    """Close and remove blobs this call created (a failed put leaves nothing of its own)."""
    for path, fd in fds:
        os.close(fd)
        path.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Store:
    """An S3-compatible bucket (path-style addressing, as MinIO, s3rver and Ceph expect).

    A successful PutObject is durable by S3's contract and never visible half-written, so
    no temporary objects are needed.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )

    #: the URL it was opened from (set by :func:`open_store`), to write back into settings
    url: str | None = None

    def location(self) -> str:
        """Where the blobs are: endpoint, bucket and prefix (not the credentials)."""
        return f"s3://{self.endpoint_url or 'aws'}/{self.bucket}/{self.prefix}"

    def _key(self, name: str) -> str:
        return self.prefix + _check_name(name)

    def put(self, name: str, data: Blob) -> None:
        body = b"".join(data) if isinstance(data, tuple) else bytes(data)
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(name), Body=body)
        except Exception as exc:  # botocore's many error types; never echo the payload
            raise StoreError(f"S3 put failed ({exc.__class__.__name__})") from None

    def put_many(self, items: list[tuple[str, Blob]]) -> None:
        for name, data in items:
            self.put(name, data)

    def get(self, name: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except self._client.exceptions.NoSuchKey:
            raise BlobNotFound("blob not found") from None
        except Exception as exc:
            raise StoreError(f"S3 get failed ({exc.__class__.__name__})") from None

    def delete(self, name: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(name))
        except Exception as exc:
            raise StoreError(f"S3 delete failed ({exc.__class__.__name__})") from None

    def _objects(self) -> Iterator[dict]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            yield from page.get("Contents", [])

    def names(self) -> Iterator[str]:
        """Objects under the prefix laid out as blobs (``ab/<name>``); other keys in a
        shared bucket are not this store's."""
        for obj in self._objects():
            name = obj["Key"][len(self.prefix) :]
            folder, _, rest = name.partition("/")
            if _is_folder(folder) and rest and "/" not in rest:
                yield name

    def clean_temp(self) -> int:
        return 0

    def usage(self) -> int:
        return sum(obj["Size"] for obj in self._objects())

    def healthy(self) -> bool:
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return True
        except Exception:  # noqa: BLE001 - health is a yes/no
            return False

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (at init)."""
        if not self.healthy():
            try:
                self._client.create_bucket(Bucket=self.bucket)
            except Exception as exc:
                raise StoreError(f"cannot create S3 bucket ({exc.__class__.__name__})") from None


def open_store(url: str) -> BlobStore:
    """``file:///path[?write=direct|stream|buffered]`` or ``s3://[KEY:SECRET@]bucket[/prefix]?endpoint=http://host:port[&region=R]``,
    or ``split:///?k=K&node=URL&node=URL...`` (erasure-coded over nodes, see ``store.split``).

    Without KEY:SECRET in the URL, boto3's usual sources apply (environment, profile).
    """
    parsed = urlparse(url)
    if parsed.scheme == "split":
        from safepacs.store.split import open_split

        return open_split(url)
    if parsed.scheme == "file":
        # ?write=direct|stream|buffered: how big blobs reach the disk (LocalStore);
        # ?direct=1/0 is the older spelling of write=direct/buffered
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        write = query.get("write")
        if "direct" in query:
            if query["direct"] not in ("0", "1") or write is not None:
                raise StoreError("file store: direct must be 0 or 1, and not given with write")
            write = "direct" if query["direct"] == "1" else "buffered"
        local = LocalStore(Path(unquote(parsed.path)), write=write)  # None: LocalStore's default
        local.url = url
        return local
    if parsed.scheme == "s3" and parsed.hostname:
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        bucket = S3Store(
            parsed.hostname,
            prefix=parsed.path,
            endpoint_url=query.get("endpoint"),
            region=query.get("region", "us-east-1"),
            access_key=unquote(parsed.username) if parsed.username else None,
            secret_key=unquote(parsed.password) if parsed.password else None,
        )
        bucket.url = url
        return bucket
    raise StoreError("store URL must be file:///PATH or s3://BUCKET?endpoint=URL")
