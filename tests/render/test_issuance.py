"""Issued copies are registered, and ``safepacs trace`` names the reader of a leaked copy
(PNG, JPEG, DICOM) or nobody: never a wrong one."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from safepacs.audit.events import MemorySink
from safepacs.cli import app
from safepacs.dicom.memio import to_bytes
from safepacs.index import db
from safepacs.render.display import rendered
from safepacs.render.issuance import Issuances, trace
from safepacs.render.levels import builtin_levels
from safepacs.render.render import RenderContext, render_instance
from safepacs.synth import make_dataset
from safepacs.synth.pixels import radiograph
from tests.render.helpers import read, through_door


def _chest(seed: int = 1, size: int = 1024) -> bytes:
    ds, _ = make_dataset(random.Random(seed), "CR", "ISO_IR 100", small=True)
    ds.Rows = ds.Columns = size
    ds.BitsStored, ds.HighBit = 12, 11
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = radiograph(np.random.default_rng(seed), size, size, 12, False).tobytes()
    return to_bytes(ds)


@pytest.fixture
def site(tmp_path):
    from safepacs.archive import Archive

    archive, _ = Archive.create(tmp_path / "data")
    keys = archive.masking.keys  # wrapped by the archive's KEK, no key file
    archive.close()
    engine = db.make_engine(f"sqlite:///{(tmp_path / 'data' / 'index.sqlite').resolve()}")
    yield tmp_path / "data", keys, Issuances(engine, audit=MemorySink())
    engine.dispose()


def _issue(issued: Issuances, username: str = "dr.chen", level: str = "pseudonymised") -> int:
    return issued.issue(account_id=12, username=username, role="researcher", instance_uid="2.25.1",
                        level=level, request_id="req-1", project="P", purpose="research",
                        now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))


def test_issue_and_lookup_round_trip(site):
    _, _, issued = site
    first, second = _issue(issued), _issue(issued, "dr.wang")
    assert first != second and all(1 <= s < 1 << 31 for s in (first, second))
    copy = issued.lookup(second)
    assert (copy.username, copy.role, copy.level, copy.project) == ("dr.wang", "researcher", "pseudonymised", "P")
    assert issued.lookup(first).username == "dr.chen"
    assert issued.lookup(next(s for s in range(1, 5) if s not in (first, second))) is None


def _row_visible_elsewhere(data_dir, serial: int) -> bool:
    other = db.make_engine(f"sqlite:///{(data_dir / 'index.sqlite').resolve()}")
    try:
        return Issuances(other).lookup(serial) is not None
    finally:
        other.dispose()


def test_a_copy_is_made_while_its_row_commits_and_leaves_only_once_the_row_is_durable(site):
    data_dir, _, issued = site
    seen = []

    def make(serial: int) -> str:
        seen.append(serial)
        return f"copy marked {serial}"

    made, serial = issued.issued(make, account_id=3, username="dr.li", role="physician",
                                 instance_uid="2.25.9", level="identified")
    assert seen == [serial] and made == f"copy marked {serial}"
    assert _row_visible_elsewhere(data_dir, serial)  # committed, seen by another connection


def test_a_serial_drawn_twice_is_drawn_again_and_the_copy_made_again(site, monkeypatch):
    data_dir, _, issued = site
    taken = _issue(issued)
    draws = iter([taken - 1, taken - 1, 4242 - 1])  # randbelow(n) + 1: the taken serial twice
    monkeypatch.setattr("safepacs.render.issuance.secrets.randbelow", lambda n: next(draws))
    seen = []
    made, serial = issued.issued(lambda s: seen.append(s) or s, account_id=5, username="dr.wu",
                                 role="physician", instance_uid="2.25.7", level="identified")
    assert seen == [taken, taken, 4242] and serial == made == 4242
    assert issued.lookup(taken).username == "dr.chen"  # the first holder keeps its row
    assert issued.lookup(4242).username == "dr.wu"


def test_concurrent_copies_share_commits_and_every_one_is_registered(site):
    import threading

    _, _, issued = site
    serials: list[int] = []
    lock = threading.Lock()

    def reader(i: int) -> None:
        for _ in range(5):
            s = issued.issue(account_id=i, username=f"reader{i}", role="researcher", instance_uid="2.25.3",
                             level="pseudonymised", project="P")
            with lock:
                serials.append(s)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(serials) == len(set(serials)) == 40
    assert all(issued.lookup(s) is not None for s in serials)
    issued.close()
    with pytest.raises(RuntimeError, match="closed"):
        _issue(issued)


def test_trace_cli_names_the_reader_of_png_jpeg_and_dicom_copies(site, tmp_path):
    data_dir, keys, issued = site
    serial = _issue(issued)
    stored, delta = through_door(_chest())
    ctx = RenderContext(project_key=keys.project("P"), serial=serial, watermark_key=keys.watermark)
    dicom = render_instance(stored, delta, builtin_levels()["pseudonymised"], ctx)
    png = rendered(read(dicom), serial=serial, key=keys.watermark)
    jpeg_path = tmp_path / "leak.jpg"
    Image.open(io.BytesIO(png)).save(jpeg_path, "JPEG", quality=75)
    (tmp_path / "leak.png").write_bytes(png)
    (tmp_path / "leak.dcm").write_bytes(dicom)
    runner = CliRunner()
    for name in ("leak.png", "leak.jpg", "leak.dcm"):
        result = runner.invoke(app, ["trace", str(tmp_path / name), "--data-dir", str(data_dir)])
        assert result.exit_code == 0, (name, result.output)
        assert "dr.chen" in result.output and f"serial: {serial}" in result.output


def test_trace_names_nobody_for_unmarked_foreign_or_unregistered_copies(site, tmp_path):
    data_dir, keys, issued = site
    image = radiograph(np.random.default_rng(3), 1024, 1024, 12, False)
    plain = Image.fromarray((image >> 4).astype(np.uint8))
    plain.save(tmp_path / "plain.png")
    from safepacs.render.display import mark_display

    eight = (image >> 4).astype(np.uint8)
    Image.fromarray(mark_display(eight, 1, bytes(32))).save(tmp_path / "foreign.png")
    Image.fromarray(mark_display(eight, 999_999, keys.watermark)).save(tmp_path / "unregistered.png")
    runner = CliRunner()
    for name in ("plain.png", "foreign.png", "unregistered.png"):
        result = runner.invoke(app, ["trace", str(tmp_path / name), "--data-dir", str(data_dir)])
        assert result.exit_code == 1, (name, result.output)
        assert "issued to" not in result.output
    assert trace(tmp_path / "unregistered.png", keys.watermark, issued.lookup) is None


def test_disagreeing_private_and_pixel_marks_name_nobody(site, tmp_path):
    _, keys, issued = site
    a, b = _issue(issued, "a"), _issue(issued, "b")
    stored, delta = through_door(_chest(2))
    level = builtin_levels()["identified"]
    ds = read(render_instance(stored, delta, level, RenderContext(serial=a, watermark_key=keys.watermark)))
    from safepacs.render.render import add_private_mark, pixel_array

    assert trace(pixel_array(ds), keys.watermark, issued.lookup).copy.username == "a"
    assert trace(_saved(ds, tmp_path / "a.dcm"), keys.watermark, issued.lookup).found_by == "pixels+private"
    add_private_mark(ds, b, keys.watermark, datetime.now(UTC))
    assert trace(_saved(ds, tmp_path / "b.dcm"), keys.watermark, issued.lookup) is None


def _saved(ds, path):
    ds.save_as(path, enforce_file_format=True)
    return path


def test_trace_is_audited_without_identity(site):
    _, _, issued = site
    issued.record_trace(None, user="auditor")
    event = issued._audit.events[-1]  # type: ignore[attr-defined]
    assert event.route == "cli:trace" and event.detail == {"found": False}
