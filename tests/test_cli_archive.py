"""The archive commands through the real CLI: init, import, status, token create."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from safepacs.archive import Archive
from safepacs.store.crypto import write_kek_file
from safepacs.synth import generate
from tests.conftest import write_media

SAFEPACS = [sys.executable, "-m", "safepacs"]


def cli(*args: object, check: int | None = 0, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*SAFEPACS, *map(str, args)], capture_output=True, text=True, timeout=600,
        env={**os.environ, **(env or {})},
    )
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """12 synthetic files, one file that is not DICOM, one truncated DICOM file."""
    root = tmp_path_factory.mktemp("import")
    generate(root / "in", 12, 21, small=True)
    (root / "in" / "answer_key.json").unlink()
    (root / "in" / "notes.txt").write_text("not an image\n")
    first = sorted((root / "in").rglob("*.dcm"))[0].read_bytes()
    (root / "in" / "cut.dcm").write_bytes(first[: len(first) // 2])
    return root / "in"


def test_init_prints_three_admin_accounts_once_and_refuses_a_second_init(tmp_path):
    data = tmp_path / "data"
    proc = cli("init", "--data-dir", data)
    rows = [line.split() for line in proc.stdout.strip().splitlines()]
    assert sorted(r[0] for r in rows) == ["security_admin", "security_auditor", "system_admin"]
    assert len({r[1] for r in rows}) == 3 and all(len(r[2]) >= 12 for r in rows)
    assert (data / "keys" / "kek.key").stat().st_mode & 0o777 == 0o600
    with Archive.open(data) as arch:
        for _role, username, password in rows:
            first = arch.access.login(username, password, "", address="127.0.0.1")
            assert first.status == "password_change_required" and not first.access_token
        assert all(password.encode() not in (data / "index.sqlite").read_bytes() for _, _, password in rows)
    assert "already" in cli("init", "--data-dir", data, check=2).stderr


def test_init_refuses_a_folder_holding_other_things_and_leaves_it_as_it_was(tmp_path):
    """An archive takes its folder over (mode 0700, files it manages): never someone's
    existing folder.  A volume's lost+found and a KEK prepared under keys/ are fine."""
    data = tmp_path / "home"
    data.mkdir(mode=0o755)
    (data / "notes.txt").write_text("mine\n")
    proc = cli("init", "--data-dir", data, check=2)
    assert "not empty" in " ".join((proc.stderr + proc.stdout).split())
    assert sorted(p.name for p in data.iterdir()) == ["notes.txt"]
    assert data.stat().st_mode & 0o777 == 0o755
    assert cli("serve", "--data-dir", data, check=2).returncode == 2  # its first-run init alike
    assert "not in the range" in cli("serve", "--data-dir", data, "--http-port", "70000", check=2).stderr
    volume = tmp_path / "volume"
    (volume / "lost+found").mkdir(parents=True)
    write_kek_file(volume / "keys" / "kek.key")  # as an operator provisions it
    prepared = (volume / "keys" / "kek.key").read_bytes()
    cli("init", "--data-dir", volume)
    assert (volume / "keys" / "kek.key").read_bytes() == prepared
    with Archive.open(volume) as arch:
        assert arch.status()["instances"] == 0


def test_import_leaves_the_archives_own_files_alone(tmp_path, folder):
    """A folder that holds the data dir (import from its parent): the archive's own files
    (ciphertext, index, keys) are skipped, not rejected as bad DICOM; the data dir itself,
    or a folder inside it, is a usage error."""
    parent = tmp_path / "site"
    data = parent / "data"
    cli("init", "--data-dir", data)
    one = sorted(folder.rglob("*.dcm"))[0]
    (parent / "incoming").mkdir()
    (parent / "incoming" / "x.dcm").write_bytes(one.read_bytes())
    report = tmp_path / "r.jsonl"
    cli("import", parent, "--data-dir", data, "--report", report, check=0)
    lines = [json.loads(x) for x in report.read_text().splitlines()]
    assert [r["status"] for r in lines if r["input"] == "incoming/x.dcm"] == ["stored"]
    own = [r for r in lines if r["input"].startswith("data/")]
    assert own and all(r["status"] == "skipped" for r in own)
    assert {"data/index.sqlite", "data/keys/kek.key"} <= {r["input"] for r in own}
    for inside in (data, data / "blobs"):
        proc = cli("import", inside, "--data-dir", data, check=2)
        assert "inside the data dir" in " ".join((proc.stderr + proc.stdout).split())


def test_import_stores_good_files_reports_bad_ones_and_exits_1(tmp_path, folder):
    data = tmp_path / "data"
    cli("init", "--data-dir", data)
    report = tmp_path / "report.jsonl"
    proc = cli("import", folder, "--data-dir", data, "--report", report, check=1,
               env={"SAFEPACS_PROGRESS": "1"})
    assert "importing" in proc.stderr
    lines = [json.loads(x) for x in report.read_text().splitlines()]
    assert len(lines) == 14
    by_input = {r["input"]: r for r in lines}
    assert by_input["notes.txt"]["status"] == "rejected" and "DICM" in by_input["notes.txt"]["reason"]
    assert by_input["cut.dcm"]["status"] == "rejected"
    stored = [r for r in lines if r["status"] == "stored"]
    assert stored and all(r["sop_instance_uid"].startswith("2.25.") for r in stored)
    status = json.loads(cli("status", "--data-dir", data, "--json").stdout)
    assert status["instances"] == len(stored) and status["database"] == "ok"
    again = cli("import", folder, "--data-dir", data, "--report", report, check=1)
    assert "duplicate" in again.stderr
    assert {json.loads(x)["status"] for x in report.read_text().splitlines()} == {"duplicate", "rejected"}


def test_import_of_only_good_files_exits_0(tmp_path, folder):
    data = tmp_path / "data"
    cli("init", "--data-dir", data)
    good = sorted(folder.rglob("*.dcm"))[1]
    cli("import", good, "--data-dir", data, "--workers", "1")
    assert json.loads(cli("status", "--data-dir", data, "--json").stdout)["instances"] == 1


def test_import_of_a_cd_skips_its_dicomdir_and_exits_0(tmp_path, folder):
    """A CD's index is no object to store: skipped (renamed too), not a rejection."""
    images = [pydicom.dcmread(p) for p in sorted(folder.rglob("*.dcm"))[1:3]]
    for n, ds in enumerate(images):
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "S1", 1, n + 1  # the records' keys
    media = tmp_path / "cd"
    dicomdir = write_media(media, images)
    (media / "index.dcm").write_bytes(dicomdir.read_bytes())
    data, report = tmp_path / "data", tmp_path / "report.jsonl"
    cli("init", "--data-dir", data)
    proc = cli("import", media, "--data-dir", data, "--report", report, "--workers", "1")
    lines = {r["input"]: r for r in map(json.loads, report.read_text().splitlines())}
    assert {k: r["status"] for k, r in lines.items() if r["status"] != "stored"} == {
        "DICOMDIR": "skipped", "index.dcm": "skipped"}
    assert "skipped" in proc.stderr
    assert json.loads(cli("status", "--data-dir", data, "--json").stdout)["instances"] == 2


def test_usage_errors_exit_2(tmp_path, folder):
    message = cli("import", folder, "--data-dir", tmp_path / "none", check=2).stderr
    assert "not a safepacs data dir" in " ".join(message.split())
    cli("init", "--data-dir", tmp_path / "d")
    cli("import", tmp_path / "missing", "--data-dir", tmp_path / "d", check=2)
    cli("status", "--data-dir", tmp_path / "none", check=2)


def test_token_create_and_status_table(tmp_path):
    data = tmp_path / "data"
    cli("init", "--data-dir", data)
    token = cli("token", "create", "--data-dir", data, "--name", "viewer-backend").stdout.strip()
    with Archive.open(data) as arch:
        who = arch.authenticate(token)
        assert (who.username, who.role) == ("viewer-backend", "service")
    table = cli("status", "--data-dir", data).stdout
    assert "instances" in table and "ok" in table


def test_serve_refuses_a_wildcard_cors_origin_before_touching_the_data_dir(tmp_path):
    data = tmp_path / "never"
    proc = cli("serve", "--data-dir", data, "--cors-origin", "*", "--no-demo", check=None)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cors_origins" in proc.stderr + proc.stdout and "no wildcard" in proc.stderr + proc.stdout
    assert not data.exists()


def test_a_file_the_store_has_no_room_for_is_reported_and_the_archive_keeps_the_rest(tmp_path):
    import resource
    import signal

    from pydicom.data import get_testdata_file

    data, inp, report = tmp_path / "data", tmp_path / "in", tmp_path / "report.jsonl"
    cli("init", "--data-dir", data)
    inp.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.save_as(inp / "small.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.99"
    ds.Rows = ds.Columns = 1024
    ds.PixelData = os.urandom(1024 * 1024 * 2)  # random: no compression makes it fit
    ds.save_as(inp / "large.dcm")

    def limited() -> None:  # in the child: no file may grow past 1 MiB (EFBIG, not a kill)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    proc = subprocess.run(
        [*SAFEPACS, "import", inp, "--data-dir", data, "--report", report, "--workers", "1"],
        capture_output=True, text=True, timeout=600, preexec_fn=limited,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = {r["input"]: r for r in map(json.loads, report.read_text().splitlines())}
    assert lines["small.dcm"]["status"] == "stored"
    assert lines["large.dcm"]["status"] == "rejected"
    assert lines["large.dcm"]["reason"] == "I/O error (File too large)"
    status = json.loads(cli("status", "--data-dir", data, "--json").stdout)
    assert status["instances"] == 1 and status["database"] == "ok"
