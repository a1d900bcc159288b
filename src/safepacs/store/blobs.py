"""Blob stores: one narrow interface (put/get/delete/list), a local folder and S3.

Blobs are opaque ciphertext named by random identifiers, never by anything in the object.
``put`` returns only once the blob is durable, which is what lets the archive commit its
index row afterwards and still survive a crash at any point (see ``archive.recovery``).
"""

from __future__ import annotations

import mmap
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlparse

from safepacs.errors import SafepacsError

_TMP = ".tmp"
_HELPERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="safepacs-blob")


class StoreError(SafepacsError):
    """The blob store cannot be reached or refused an operation."""


class BlobNotFound(StoreError):
    """No blob of that name."""


class BlobStore(Protocol):
    """Where sealed blobs live."""

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` durably under ``name`` (returns only when it would survive a crash)."""
        ...

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
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
    versions wrote there)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
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

    def put(self, name: str, data: bytes) -> None:
        self.put_many([(name, data)])

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
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
        side += [_HELPERS.submit(_write_fd, fd, data) for (_, data), (_, fd) in zip(items[1:], fds[1:], strict=True)]
        errors: list[BaseException] = []
        try:
            _write_fd(fds[0][1], items[0][1])
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
                return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)  # type: ignore[return-value]
        except FileNotFoundError:
            raise BlobNotFound("blob not found") from None

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def names(self) -> Iterator[str]:
        for folder in sorted(self.root.iterdir()):
            if folder.name == _TMP or not folder.is_dir():
                continue
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                yield f"{folder.name}/{entry.name}"

    def clean_temp(self) -> int:
        count = 0
        for entry in os.scandir(self.root / _TMP):
            os.unlink(entry.path)
            count += 1
        return count

    def usage(self) -> int:
        return sum((self.root / n).stat().st_size for n in self.names())

    def healthy(self) -> bool:
        return os.access(self.root / _TMP, os.W_OK)


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


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
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )

    def _key(self, name: str) -> str:
        return self.prefix + _check_name(name)

    def put(self, name: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(name), Body=bytes(data))
        except Exception as exc:  # botocore's many error types; never echo the payload
            raise StoreError(f"S3 put failed ({exc.__class__.__name__})") from None

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
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
        for obj in self._objects():
            yield obj["Key"][len(self.prefix) :]

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
    """``file:///path`` or ``s3://[KEY:SECRET@]bucket[/prefix]?endpoint=http://host:port[&region=R]``,
    or ``split:///?k=K&node=URL&node=URL...`` (erasure-coded over nodes, see ``store.split``).

    Without KEY:SECRET in the URL, boto3's usual sources apply (environment, profile).
    """
    parsed = urlparse(url)
    if parsed.scheme == "split":
        from safepacs.store.split import open_split

        return open_split(url)
    if parsed.scheme == "file":
        return LocalStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3" and parsed.hostname:
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        return S3Store(
            parsed.hostname,
            prefix=parsed.path,
            endpoint_url=query.get("endpoint"),
            region=query.get("region", "us-east-1"),
            access_key=unquote(parsed.username) if parsed.username else None,
            secret_key=unquote(parsed.password) if parsed.password else None,
        )
    raise StoreError("store URL must be file:///PATH or s3://BUCKET?endpoint=URL")
