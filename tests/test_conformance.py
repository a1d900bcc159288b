"""De-identification must not add IOD conformance errors (dciodvfy, dicom3tools)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TCIA, needs_tcia
from tests.test_cli import cli

pytestmark = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")


def _errors(files: list[Path]) -> set[str]:
    found = set()
    for f in files:
        proc = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True, errors="replace")
        for line in (proc.stdout + proc.stderr).splitlines():
            if line.startswith("Error"):
                found.add(re.sub(r"\d+", "N", re.sub(r"<[^>]*\d[^>]*>", "<V>", line)))
    return found


def test_deid_adds_no_conformance_error_on_the_synth_corpus(corpus, tmp_path):
    src, _ = corpus
    out = tmp_path / "out"
    cli("deid", src, out, "--key-file", tmp_path / "k")
    originals = sorted(src.rglob("*.dcm"))[:60]
    outputs = sorted(out.rglob("*.dcm"))
    assert _errors(outputs) <= _errors(originals)


@needs_tcia
def test_deid_adds_no_conformance_error_on_real_world_samples(tmp_path):
    out = tmp_path / "out"
    cli("deid", TCIA, out, "--key-file", tmp_path / "k", "--accept-burned-in-risk", check=1)
    originals = sorted(p for p in TCIA.iterdir() if p.suffix in (".dcm", ".dicom"))
    assert _errors(sorted(out.rglob("*.dcm"))) <= _errors(originals)
