"""Crash safety: a process killed between blob write and commit leaves only removable
ciphertext; one killed after the commit leaves a whole object."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from safepacs.archive import Archive
from safepacs.archive.recovery import recover
from safepacs.store.blobs import LocalStore, StoreError
from tests.archive.objects import ct_bytes
from tests.people import reader

ROOT = Path(__file__).resolve().parents[2]

_CRASH = """
import os, sys
from pathlib import Path
from safepacs.archive.service import Archive
when = sys.argv[3]
original = Archive._commit_batch
def crashing(self, *args, **kwargs):
    if when == "after":
        original(self, *args, **kwargs)
    os._exit(9)   # no cleanup, no finally: like SIGKILL
Archive._commit_batch = crashing
arch = Archive.open(Path(sys.argv[1]), database_url=sys.argv[2] or None)
arch.ingest(Path(sys.argv[4]).read_bytes(), source="crash")
"""


def _crash_during_ingest(archive_dir: Path, database_url: str | None, when: str, data: bytes, tmp: Path) -> None:
    obj = tmp / "obj.bin"  # synthetic test object, outside the data dir
    obj.write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH, str(archive_dir), database_url or "", when, str(obj)],
        cwd=ROOT, capture_output=True, timeout=120,
    )
    assert proc.returncode == 9, proc.stderr.decode()[-2000:]


def _blobs(archive_dir: Path) -> list[Path]:
    return sorted(p for p in (archive_dir / "blobs").rglob("*") if p.is_file() and ".tmp" not in p.parts)


@pytest.mark.parametrize("when", ["before", "after"])
def test_crash_around_the_commit(archive, archive_dir, database_url, tmp_path, when):
    arch, _ = archive
    kept = arch.ingest(ct_bytes("1.2.5.1"), source="t")
    kept_bytes = arch.read_instance(kept.sop_instance_uid, principal=reader(arch))
    arch.close()
    _crash_during_ingest(archive_dir, database_url, when, ct_bytes("1.2.5.2"), tmp_path)
    # as a crash in the middle of a blob write leaves it
    (archive_dir / "blobs" / ".tmp" / "deadbeef.part").write_bytes(b"half a blob")
    assert len(_blobs(archive_dir)) == 4  # both objects' blobs are on disk either way
    again = Archive.open(archive_dir, database_url=database_url)
    try:
        report = again.recovery
        assert report is not None and report.temp_removed == 1 and report.missing_blobs == 0
        assert list((archive_dir / "blobs" / ".tmp").iterdir()) == []
        if when == "before":  # never acknowledged: gone without a trace
            assert report.orphans_removed == 2
            assert again.status()["instances"] == 1 and len(_blobs(archive_dir)) == 2
        else:  # committed: whole, and retrievable
            assert report.orphans_removed == 0
            assert again.status()["instances"] == 2 and len(_blobs(archive_dir)) == 4
            (study,) = again.search("study", {}, principal=reader(again))
            refs = again.instances(study_uid=study.StudyInstanceUID, principal=reader(again))
            assert all(again.read_instance(r.sop_uid, principal=reader(again)) for r in refs)
        assert again.read_instance(kept.sop_instance_uid, principal=reader(again)) == kept_bytes
        # the object that was lost before its commit can simply be sent again
        assert again.ingest(ct_bytes("1.2.5.2"), source="retry").status == (
            "stored" if when == "before" else "duplicate")
    finally:
        again.close()


def test_recovery_never_removes_blobs_of_a_live_process(archive, archive_dir, database_url):
    """An archive opened while another process has it open (``import`` beside ``serve``)
    must not take that process's written-but-uncommitted blobs for orphans."""
    arch, _ = archive  # the live "server"
    in_flight = archive_dir / "blobs" / "ab" / ("ab" + "0" * 30 + ".obj")
    in_flight.parent.mkdir(parents=True, exist_ok=True)
    in_flight.write_bytes(b"sealed, commit pending")
    second = Archive.open(archive_dir, database_url=database_url)
    try:
        assert second.recovery is None and in_flight.exists()
    finally:
        second.close()
    arch.close()
    alone = Archive.open(archive_dir, database_url=database_url)  # now nobody else has it open
    try:
        assert alone.recovery is not None and alone.recovery.orphans_removed == 1
        assert not in_flight.exists()
    finally:
        alone.close()


def test_recovery_deletes_only_names_the_archive_makes(archive, archive_dir, database_url):
    """Unreferenced files of another shape in a blob folder, and anything outside the blob
    folders, are not the archive's: counted as foreign (in a folder) and left in place."""
    arch, _ = archive
    arch.close()
    blobs = archive_dir / "blobs"
    orphan = blobs / "cd" / ("cd" + "1" * 30 + ".obj")
    orphan.write_bytes(b"sealed, never committed")
    foreign = [blobs / "cd" / "README.txt", blobs / "cd" / ("ef" + "1" * 30 + ".obj")]
    for path in foreign:
        path.write_bytes(b"someone else's")
    (blobs / "backup" / "blobs").mkdir(parents=True)
    (blobs / "backup" / "backup.json").write_bytes(b"someone else's")
    again = Archive.open(archive_dir, database_url=database_url)
    try:
        report = again.recovery
        assert report is not None and report.orphans_removed == 1 and report.foreign_left == 2
        assert not orphan.exists()
        assert all(p.read_bytes() == b"someone else's" for p in [*foreign, blobs / "backup" / "backup.json"])
    finally:
        again.close()


class _Undeletable(LocalStore):
    """A disk that refuses one unlink (a permission, an immutable file): root, which the
    tests run as, cannot be refused by mode bits."""

    def __init__(self, root: Path, refused: str) -> None:
        super().__init__(root)
        self.refused = refused

    def delete(self, name: str) -> None:
        if name == self.refused:
            raise StoreError("file store: cannot delete a blob (PermissionError)")
        super().delete(name)


def test_an_orphan_that_cannot_be_deleted_does_not_keep_the_archive_shut(archive, archive_dir):
    arch, _ = archive
    blobs = archive_dir / "blobs"
    stuck, gone = (f"{h}/{h}{c * 30}.obj" for h, c in (("aa", "2"), ("bb", "3")))
    for name in (stuck, gone):
        (blobs / name).write_bytes(b"sealed, never committed")
    (blobs / ".tmp" / "sub").mkdir()  # not a temp file of ours: left, and no crash
    report = recover(arch._engine, _Undeletable(blobs, stuck))
    assert (report.orphans_removed, report.orphans_left) == (1, 1)
    assert (blobs / stuck).exists() and not (blobs / gone).exists()

