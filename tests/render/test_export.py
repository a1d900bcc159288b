"""A research export: files at the project's level, named by project identifiers, with a
manifest; failures reported without values."""

from __future__ import annotations

import hashlib
import json
import random

from safepacs.dicom.memio import to_bytes
from safepacs.render.export import MANIFEST, export
from safepacs.render.levels import builtin_levels
from safepacs.render.render import project_pseudonym
from safepacs.synth import make_dataset
from tests.render.helpers import context, read, through_door


def _pairs(n: int = 3) -> tuple[list[tuple[bytes, bytes]], list]:
    pairs, planted = [], []
    for i in range(n):
        ds, p = make_dataset(random.Random(40 + i), ("CT", "MR", "CR")[i % 3], "ISO_IR 192", small=True)
        pairs.append(through_door(to_bytes(ds)))
        planted.extend(p)
    return pairs, planted


def test_export_writes_project_level_files_and_a_manifest(tmp_path):
    pairs, planted = _pairs()
    pairs.append((b"not dicom at all" * 20, None))
    ctx = context("P", serial=11)
    report = export(pairs, builtin_levels()["pseudonymised"], ctx, tmp_path / "out", project="P")
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["count"] == 3 and manifest["level"] == "pseudonymised" and manifest["project"] == "P"
    assert manifest["failed"] == [{"index": 3, "reason": report.failed[0]["reason"]}]
    assert "not dicom" not in report.failed[0]["reason"]
    for entry in manifest["files"]:
        data = (tmp_path / "out" / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert (tmp_path / "out" / entry["path"]).stat().st_mode & 0o777 == 0o600
        ds = read(data)
        assert entry["path"].startswith(ds.PatientID + "/" + ds.StudyInstanceUID + "/")
        text = data.decode("latin-1")
        assert not [p for p in planted if len(p.value) >= 6 and p.value in text]
    stored_ids = {read(s).PatientID for s, _ in pairs[:3]}
    assert {e["path"].split("/")[0] for e in manifest["files"]} == {
        project_pseudonym(ctx.project_key, pid) for pid in stored_ids}


def test_export_never_overwrites(tmp_path):
    pairs, _ = _pairs(1)
    level = builtin_levels()["anonymised"]
    first = export(pairs, level, context(serial=None, request_salt=b"s" * 32), tmp_path)
    again = export(pairs, level, context(serial=None, request_salt=b"s" * 32), tmp_path)
    assert len(first.files) == 1 and not again.files
    assert again.failed[0]["reason"] == "two objects render to the same path"
