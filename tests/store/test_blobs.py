"""Blob stores: the local folder (atomic, durable) and S3 against a real s3rver."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from safepacs.store import blobs
from safepacs.store.blobs import (
    BlobNotFound,
    LocalStore,
    S3Store,
    StoreError,
    new_names,
    open_store,
)


def _round_trip(store) -> None:  # type: ignore[no-untyped-def]
    a, b = new_names("obj", "dlt")
    assert a.split("/")[0] == b.split("/")[0]
    store.put_many([(a, b"A" * 1000), (b, memoryview(b"B" * 10))])
    assert bytes(store.get(a)) == b"A" * 1000
    assert bytes(store.get(b)) == b"B" * 10
    assert sorted(store.names()) == sorted([a, b])
    assert store.usage() == 1010
    store.delete(a)
    store.delete(a)  # absent is fine
    with pytest.raises(BlobNotFound):
        store.get(a)
    assert list(store.names()) == [b]
    assert store.healthy()


def test_local_store_round_trip(tmp_path: Path):
    _round_trip(LocalStore(tmp_path / "blobs"))


def test_local_store_leaves_no_temp_files_and_files_are_private(tmp_path: Path):
    store = LocalStore(tmp_path)
    (name,) = new_names("obj")
    store.put(name, b"x" * 10)
    assert os.listdir(tmp_path / ".tmp") == []
    assert (tmp_path / name).stat().st_mode & 0o077 == 0


def test_local_store_cleans_half_written_temp_files(tmp_path: Path):
    store = LocalStore(tmp_path)
    (tmp_path / ".tmp" / "abc.part").write_bytes(b"half")
    assert store.clean_temp() == 1
    assert list(store.names()) == []


@pytest.mark.parametrize("name", ["../x", "a/../../b", "/etc/passwd", "ab", "ab/", "ab/c/d"])
def test_blob_names_cannot_escape_the_store(tmp_path: Path, name: str):
    store = LocalStore(tmp_path)
    with pytest.raises(StoreError):
        store.get(name)


def test_s3_store_round_trip_against_s3rver(s3_url: str):
    store = open_store(s3_url)
    assert isinstance(store, S3Store)
    assert not store.healthy()  # the bucket does not exist yet
    store.ensure_bucket()
    _round_trip(store)
    # another tool's objects under the same prefix are not this store's blobs
    for key in ("backup/index.sqlite", "ab/cd/x.obj", "notes.txt"):
        store._client.put_object(Bucket=store.bucket, Key=store.prefix + key, Body=b"theirs")
    [b] = store.names()
    assert b.endswith(".dlt")


def test_local_store_lists_only_files_of_its_own_folders(tmp_path: Path):
    """What else lies under the root (a backup copied in, a subfolder, a link) is never
    listed: listing it once crashed every open of the archive (crash recovery took a
    folder for an orphan blob) and deleted a user's files."""
    store = LocalStore(tmp_path / "blobs")
    [a] = new_names("obj")
    store.put(a, b"mine")
    (tmp_path / "blobs" / "backup" / "blobs").mkdir(parents=True)
    (tmp_path / "blobs" / "backup" / "index.sqlite").write_bytes(b"theirs")
    (tmp_path / "blobs" / "ab" / "sub").mkdir(parents=True, exist_ok=True)
    (tmp_path / "blobs" / "ab" / "sub" / "x.obj").write_bytes(b"theirs")
    (tmp_path / "blobs" / "ab" / "link.obj").symlink_to(tmp_path / "blobs" / "backup" / "index.sqlite")
    (tmp_path / "blobs" / "notes.txt").write_bytes(b"theirs")
    assert list(store.names()) == [a]
    assert store.usage() == 4


def test_unknown_store_url_is_refused():
    with pytest.raises(StoreError):
        open_store("ftp://x/y")


def test_local_store_failed_put_removes_what_it_wrote_and_spares_existing_blobs(tmp_path: Path):
    store = LocalStore(tmp_path / "blobs")
    a, b = new_names("obj", "dlt")
    store.put(b, b"someone else's blob")
    with pytest.raises(FileExistsError):
        store.put_many([(a, b"A" * 5000), (b, b"B")])  # b exists: never overwritten
    assert sorted(store.names()) == [b]  # a, already written, was removed again
    assert bytes(store.get(b)) == b"someone else's blob"



@pytest.mark.parametrize("write", blobs.WRITE_MODES)
@pytest.mark.parametrize(
    "size",
    [blobs.DIRECT_MIN - 1, blobs.DIRECT_MIN, 3 * 4096, 2 * blobs._CHUNK + 777, blobs._CHUNK,
     blobs.DIRECT_MIN + blobs._STREAM_CHUNK // 2],
)
def test_big_blobs_come_back_exactly_whichever_way_they_are_written(tmp_path: Path, write: str, size: int):
    store = LocalStore(tmp_path, write=write)
    data = os.urandom(size)
    cut = size // 3 + 1  # parts that end off any alignment
    (a, b) = new_names("obj", "dlt")
    store.put_many([(a, (data[:cut], memoryview(data)[cut:])), (b, bytearray(data))])
    for name in (a, b):
        assert (tmp_path / name).stat().st_size == size  # no alignment padding left behind
        assert bytes(store.get(name)) == data
        assert (tmp_path / name).stat().st_mode & 0o077 == 0


def test_big_blobs_go_through_o_direct_where_the_file_system_takes_it(tmp_path: Path, monkeypatch):
    calls = []
    real = blobs._write_direct
    monkeypatch.setattr(blobs, "_write_direct", lambda fd, views: calls.append(fd) or real(fd, views))
    store = LocalStore(tmp_path, write="direct")
    (name,) = new_names("obj")
    data = os.urandom(blobs.DIRECT_MIN + 1)
    store.put(name, data)
    assert bytes(store.get(name)) == data
    if store.direct:  # the file system took O_DIRECT
        assert len(calls) == 1
    small = new_names("dlt")[0]
    store.put(small, b"delta")  # small blobs never do
    assert len(calls) <= 1


def test_a_file_system_refusing_o_direct_midway_gets_a_whole_buffered_blob(tmp_path: Path, monkeypatch):
    def half_then_refuse(fd: int, views: list) -> None:  # type: ignore[type-arg]
        os.write(fd, b"\0" * 8192)  # something already on disk
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(blobs, "_write_direct", half_then_refuse)
    store = LocalStore(tmp_path, direct=True)
    store.direct = True  # even where the platform has no O_DIRECT: the fallback is tested
    monkeypatch.setattr(blobs, "_set_direct", lambda fd, on: None)
    (name,) = new_names("obj")
    data = os.urandom(blobs.DIRECT_MIN * 2 + 5)
    store.put(name, data)
    assert bytes(store.get(name)) == data and (tmp_path / name).stat().st_size == len(data)
    assert store.direct is False  # and it stops trying


def test_other_write_errors_fail_the_put_and_leave_nothing(tmp_path: Path, monkeypatch):
    def disk_full(fd: int, views: list) -> None:  # type: ignore[type-arg]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(blobs, "_write_direct", disk_full)
    monkeypatch.setattr(blobs, "_set_direct", lambda fd, on: None)
    store = LocalStore(tmp_path)
    store.direct = True
    (name,) = new_names("obj")
    with pytest.raises(OSError):
        store.put(name, os.urandom(blobs.DIRECT_MIN))
    assert list(store.names()) == []


def test_a_file_store_url_can_turn_direct_writes_off(tmp_path: Path):
    from safepacs.store.blobs import StoreError, open_store

    default = open_store(f"file://{tmp_path}/a")
    assert default.direct == bool(blobs._O_DIRECT) and default.stream is False
    streamed = open_store(f"file://{tmp_path}/e?write=stream")
    assert streamed.stream == (blobs._sync_file_range is not None) and streamed.direct is False
    assert open_store(f"file://{tmp_path}/c?direct=1").direct == bool(blobs._O_DIRECT)
    assert open_store(f"file://{tmp_path}/d?write=direct").direct == bool(blobs._O_DIRECT)
    store = open_store(f"file://{tmp_path}/b?direct=0")
    assert store.direct is False and store.stream is False
    data = os.urandom(blobs.DIRECT_MIN + 4097)
    (name,) = new_names("obj")
    store.put(name, data)
    assert bytes(store.get(name)) == data
    with pytest.raises(StoreError, match="direct"):
        open_store(f"file://{tmp_path}/c?direct=yes")


def test_streamed_writes_start_writeback_chunk_by_chunk_and_keep_the_blob_cached(tmp_path: Path, monkeypatch):
    if blobs._sync_file_range is None:
        pytest.skip("no sync_file_range on this platform")
    ranges = []
    real = blobs._sync_file_range
    monkeypatch.setattr(blobs, "_sync_file_range", lambda fd, off, n: ranges.append((off, n)) or real(fd, off, n))
    store = LocalStore(tmp_path, write="stream")
    data = os.urandom(blobs.DIRECT_MIN + blobs._STREAM_CHUNK // 3)
    cut = 12345  # a header part that ends off any chunk boundary
    (name,) = new_names("obj")
    store.put(name, (data[:cut], memoryview(data)[cut:]))
    assert bytes(store.get(name)) == data
    # every byte handed to the disk once, in order, in chunks of at most 1 MiB
    assert [off for off, _ in ranges] == [sum(n for _, n in ranges[:i]) for i in range(len(ranges))]
    assert sum(n for _, n in ranges) == len(data) and max(n for _, n in ranges) <= blobs._STREAM_CHUNK
    small = new_names("dlt")[0]
    store.put(small, b"delta")  # small blobs are one plain write
    assert sum(n for _, n in ranges) == len(data)


def test_a_kernel_without_early_writeback_still_gets_a_whole_blob(tmp_path: Path, monkeypatch):
    def refuse(fd: int, off: int, n: int) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(blobs, "_sync_file_range", refuse)
    store = LocalStore(tmp_path, write="stream")
    store.stream = True
    (name,) = new_names("obj")
    data = os.urandom(blobs.DIRECT_MIN * 2 + 3)
    store.put(name, data)
    assert bytes(store.get(name)) == data and (tmp_path / name).stat().st_size == len(data)
    assert store.stream is False  # and it stops trying


def test_an_unknown_write_mode_is_refused(tmp_path: Path):
    from safepacs.store.blobs import StoreError, open_store

    with pytest.raises(StoreError):
        open_store(f"file://{tmp_path}/a?write=sometimes")
    with pytest.raises(StoreError):
        open_store(f"file://{tmp_path}/a?write=direct&direct=0")
