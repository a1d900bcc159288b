"""End to end through the real CLI: synth corpus -> deid -> verify/restore, bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from safepacs.deid.options import Options
from safepacs.deid.profile import load_profile
from tests.conftest import TCIA, deid_report, needs_tcia, write_media

SAFEPACS = [sys.executable, "-m", "safepacs"]
PROFILE = load_profile()
IDENTITY_KINDS = {"name", "id", "date", "datetime", "phone", "email", "resident_id", "address", "uid",
                  "private", "institution", "device"}

OPTION_SETS = {
    "basic": [],
    "full-dates": ["--retain-long-full-dates"],
    "modified-dates": ["--retain-long-modified-dates"],
    "patient-chars": ["--retain-patient-characteristics"],
    "device": ["--retain-device-identity"],
    "institution": ["--retain-institution-identity"],
    "uids": ["--retain-uids"],
    "safe-private": ["--retain-safe-private"],
    "clean-descriptors": ["--clean-descriptors"],
    "clean-sr-graphics": ["--clean-structured-content", "--clean-graphics"],
}
FLAG_TO_OPTION = {
    "--retain-long-full-dates": "retain_long_full_dates",
    "--retain-long-modified-dates": "retain_long_modified_dates",
    "--retain-patient-characteristics": "retain_patient_characteristics",
    "--retain-device-identity": "retain_device_identity",
    "--retain-institution-identity": "retain_institution_identity",
    "--retain-uids": "retain_uids",
    "--retain-safe-private": "retain_safe_private",
    "--clean-descriptors": "clean_descriptors",
    "--clean-structured-content": "clean_structured_content",
    "--clean-graphics": "clean_graphics",
}


def cli(*args: object, check: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([*SAFEPACS, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


def _dcm_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.dcm"))


def _three_files(src: Path, folder: Path, prefix: str = "") -> list[Path]:
    """The corpus' first three files, copied into a new ``folder``; the originals."""
    good = _dcm_files(src)[:3]
    folder.mkdir()
    for i, p in enumerate(good):
        shutil.copy(p, folder / f"{prefix}{i}.dcm")
    return good


def _search_forms(value: str) -> list[bytes]:
    forms = set()
    for codec in ("utf-8", "gb18030", "latin-1", "iso2022_jp", "iso2022_kr"):
        try:
            forms.add(value.encode(codec))
        except UnicodeEncodeError:
            pass
    return [f for f in forms if len(f) >= 3]


def _found(value: str, blob: bytes) -> bool:
    """Byte search in every plausible encoding; a number must stand alone (so that the
    weight 50.68 is not "found" inside the time 161550.689013), and so must an ASCII word:
    a three-letter surname such as "XIE" turns up by chance inside keyed base32 pseudonyms
    and 2.25 UIDs (different with every key), while a real leak stands between delimiters."""
    if re.fullmatch(r"[0-9.]+", value):
        return re.search(rb"(?<![0-9.])" + re.escape(value.encode()) + rb"(?![0-9])", blob) is not None
    for form in _search_forms(value):
        if not form.isascii():
            if form in blob:
                return True
        elif re.search(rb"(?<![A-Za-z0-9])" + re.escape(form) + rb"(?![A-Za-z0-9])", blob):
            return True
    return False


@pytest.mark.parametrize("name", list(OPTION_SETS))
def test_no_planted_value_survives_where_the_options_say_it_must_go(corpus, tmp_path, name):
    src, key = corpus
    flags = OPTION_SETS[name]
    enabled = {FLAG_TO_OPTION[f] for f in flags}
    out = tmp_path / "out"
    cli("deid", src, out, "--key-file", tmp_path / "k.key", "--workers", "2", *flags)
    report = [json.loads(x) for x in deid_report(out).read_text().splitlines()]
    assert [r["status"] for r in report] == ["ok"] * key.count
    output_of = {r["input"]: (out / r["output"]).read_bytes() for r in report}
    if "retain_long_modified_dates" in enabled:
        enabled = enabled | {"times"}  # whole-day shifts keep times as they are, by design
    options = Options(**{o: True for o in enabled if o != "times"})

    def kept(p) -> bool:
        if set(p.retained_by) & enabled or (p.kind == "time" and "times" in enabled):
            return True
        # Clean (C) keeps descriptive text such as Occupation once identity is scrubbed out
        row = PROFILE.row_for(int(p.tag, 16))
        return bool(row) and row.action(options) == "C" and p.kind not in IDENTITY_KINDS

    # a value that is legitimately kept somewhere (e.g. a retained StudyInstanceUID) may
    # appear; a byte search cannot tell its locations apart
    allowed = {p.value for p in key.planted if kept(p)}
    must_go = [p for p in key.planted if not kept(p) and p.value not in allowed]
    # each planted value is searched in the output of its own file (verify-deid below
    # searches every value in every file)
    survivors = [p for p in must_go if _found(p.value, output_of[p.file])]
    assert survivors == [], [(p.location, p.kind) for p in survivors[:10]]
    verify = cli("verify-deid", src, out, "--key-file", tmp_path / "k.key", check=None)
    assert verify.returncode == 0, verify.stdout[-3000:]


def test_same_key_gives_identical_bytes_and_another_key_shares_nothing(corpus, tmp_path):
    src, _ = corpus
    cli("deid", src, tmp_path / "a", "--key-file", tmp_path / "k1")
    cli("deid", src, tmp_path / "b", "--key-file", tmp_path / "k1", "--workers", "2")
    cli("deid", src, tmp_path / "c", "--key-file", tmp_path / "k2")
    a, b, c = (_dcm_files(tmp_path / x) for x in "abc")
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=True))
    ids_a = {str(pydicom.dcmread(p).PatientID) for p in a} | {p.stem for p in a}
    ids_c = {str(pydicom.dcmread(p).PatientID) for p in c} | {p.stem for p in c}
    assert ids_a and not ids_a & ids_c


def test_references_stay_consistent_and_dcmdump_reads_every_output(corpus, tmp_path):
    src, _ = corpus
    out = tmp_path / "out"
    cli("deid", src, out, "--key-file", tmp_path / "k")
    sops, refs = set(), set()
    for p in _dcm_files(out):
        ds = pydicom.dcmread(p)
        sops.add(ds.SOPInstanceUID)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        for seq in ("ReferencedImageSequence", "SourceImageSequence"):
            for item in ds.get(seq, []):
                refs.add(item.ReferencedSOPInstanceUID)
    assert refs and refs <= sops  # every reference points at an object of the corpus
    if shutil.which("dcmdump"):
        for p in _dcm_files(out)[:60]:
            proc = subprocess.run(["dcmdump", "-q", str(p)], capture_output=True, text=True)
            assert proc.returncode == 0 and "E:" not in proc.stderr, proc.stderr


def test_restore_reproduces_each_original_header(corpus, tmp_path):
    src, _ = corpus
    out, deltas, back = tmp_path / "out", tmp_path / "deltas", tmp_path / "back"
    cli("deid", src, out, "--key-file", tmp_path / "k", "--delta-dir", deltas, "--clean-descriptors")
    assert b"DICM" not in b"".join(p.read_bytes()[:200] for p in deltas.iterdir())  # sealed
    cli("restore", out, deltas, back, "--key-file", tmp_path / "k")
    originals = {}
    for p in _dcm_files(src):
        ds = pydicom.dcmread(p)
        originals[ds.SOPInstanceUID] = ds
    restored = _dcm_files(back)
    assert len(restored) == len(originals)
    for p in restored:
        r = pydicom.dcmread(p)
        o = originals[r.SOPInstanceUID]
        for elem in o:
            if elem.tag.element == 0:
                continue
            assert elem.tag in r, elem.tag
            assert r[elem.tag].value == elem.value or r[elem.tag].VR == "SQ", elem.tag
            assert r[elem.tag].VR == elem.VR or elem.VR == "UN"
        assert set(r.keys()) == {t for t in o.keys() if t.element != 0}


@needs_tcia
def test_tcia_samples_lose_their_header_phi(tmp_path):
    out = tmp_path / "out"
    cli("deid", TCIA, out, "--key-file", tmp_path / "k", "--accept-burned-in-risk", check=1)
    report = [json.loads(x) for x in deid_report(out).read_text().splitlines()]
    by_input = {r["input"]: r for r in report}
    assert by_input["README.md"]["status"] == "rejected"
    assert by_input["0_ORIGINAL_compressed.dcm"]["status"] == "ok"
    blob = b"".join(p.read_bytes() for p in _dcm_files(out))
    for phi in (b"DAVIDSON", b"DOUGLAS", b"292821506", b"KAUFMAN", b"RODGERS", b"SAMUEL"):
        assert phi not in blob.upper()
    ds = pydicom.dcmread(TCIA / "0_ORIGINAL_compressed.dcm")
    assert str(ds.InstitutionName).encode() not in blob
    verify = cli("verify-deid", TCIA, out, check=None)
    assert verify.returncode == 0, verify.stdout[-3000:]


@needs_tcia
def test_burned_in_samples_are_refused_when_pixel_cleaning_is_off(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(TCIA / "RGB_ORIGINAL.dcm", src)
    ds = pydicom.dcmread(src / "RGB_ORIGINAL.dcm")
    ds.BurnedInAnnotation = "YES"
    ds.save_as(src / "burned.dcm")
    out = tmp_path / "out"
    cli("deid", src, out, "--key-file", tmp_path / "k", "--no-clean-pixels", check=1)
    report = [json.loads(x) for x in deid_report(out).read_text().splitlines()]
    refused = [r for r in report if r["input"] == "burned.dcm"][0]
    assert refused["status"] == "rejected" and "burned-in" in refused["reason"]


@needs_tcia
def test_tcia_burned_in_text_is_cleaned_verified_and_restored(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("0_ORIGINAL_compressed.dcm", "2_ORIGINAL.dicom"):
        shutil.copy(TCIA / name, src)
    out, deltas, back = tmp_path / "out", tmp_path / "deltas", tmp_path / "back"
    run = cli("deid", src, out, "--key-file", tmp_path / "k", "--delta-dir", deltas, "--clean-pixels")
    assert "pixels cleaned in 2 files" in run.stderr + run.stdout
    report = [json.loads(x) for x in deid_report(out).read_text().splitlines()]
    for r in report:
        assert r["status"] == "ok" and r["pixels"]["boxes_removed"] >= 1
        # the output path is made of keyed pseudonyms and 2.25 UIDs, whose digits may hold
        # "1976" by chance: everything else in the line must not
        line = json.dumps({k: v for k, v in r.items() if k != "output"}).upper()
        assert not [w for w in ("DAVIDSON", "KAUFMAN", "1976", "1943") if w in line]
        assert not [w for w in ("DAVIDSON", "KAUFMAN") if w in r["output"].upper()]
    verify = cli("verify-deid", src, out, "--key-file", tmp_path / "k", check=None)
    assert verify.returncode == 0, verify.stdout[-3000:]
    assert "read by OCR" in verify.stdout
    cli("restore", out, deltas, back, "--key-file", tmp_path / "k")
    restored = {pydicom.dcmread(p).SOPInstanceUID: p.read_bytes()[128:] for p in _dcm_files(back)}
    for name in ("0_ORIGINAL_compressed.dcm", "2_ORIGINAL.dicom"):
        original = (src / name).read_bytes()
        assert restored[pydicom.dcmread(src / name).SOPInstanceUID] == original[128:]


def test_verify_reports_identity_left_legible_in_pixels(tmp_path):
    from safepacs.synth.burned import chest_xray

    src = tmp_path / "in"
    src.mkdir()
    chest_xray(301, kinds=("latin_name", "date")).dataset.save_as(src / "cr.dcm", enforce_file_format=True)
    out = tmp_path / "out"
    cli("deid", src, out, "--key-file", tmp_path / "k", "--no-clean-pixels", "--accept-burned-in-risk")
    verify = cli("verify-deid", src, out, "--key-file", tmp_path / "k", check=1)
    assert "burned-in" in verify.stdout
    cleaned = tmp_path / "cleaned"
    cli("deid", src, cleaned, "--key-file", tmp_path / "k")  # default: at risk, so cleaned
    cli("verify-deid", src, cleaned, "--key-file", tmp_path / "k", check=0)


def test_without_the_key_one_originals_header_still_says_what_to_read_in_the_pixels(tmp_path):
    """The copy's UIDs were replaced, so without the key it cannot be matched to its
    original by UID; with one original there is no doubt which it is, and its values (the
    institution here, which no pattern rule knows as such) are read for in the pixels."""
    from safepacs.synth.burned import chest_xray

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    chest_xray(301, kinds=("institution",)).dataset.save_as(src / "cr.dcm", enforce_file_format=True)
    cli("deid", src, out, "--key-file", tmp_path / "k", "--no-clean-pixels", "--accept-burned-in-risk")
    verify = cli("verify-deid", src, out, check=1)
    assert "header:Institutio" in verify.stdout


def test_verify_with_workers_shows_progress_and_finds_what_one_process_finds(corpus, tmp_path):
    src, _ = corpus
    out = tmp_path / "out"
    cli("deid", src, out, "--key-file", tmp_path / "k", "--no-clean-pixels", "--accept-burned-in-risk")
    leaked = sorted(out.rglob("*.dcm"))[3]
    ds = pydicom.dcmread(leaked)
    original = next(p for p in _dcm_files(src) if pydicom.dcmread(p).PatientID)
    ds.ImageComments = str(pydicom.dcmread(original).PatientID)
    ds.save_as(leaked)
    reports = []
    for workers in (1, 2):
        report = tmp_path / f"report{workers}.json"
        proc = subprocess.run(
            [*SAFEPACS, "verify-deid", src, out, "--key-file", tmp_path / "k", "--workers", str(workers),
             "--report", report], capture_output=True, text=True, timeout=600,
            env={**os.environ, "SAFEPACS_PROGRESS": "1"},
        )
        assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert "reading originals" in proc.stderr and "searching de-identified files" in proc.stderr
        reports.append(json.loads(report.read_text()))
    assert reports[0] == reports[1] and reports[0]["leaks_by_kind"].get("id", 0) >= 1


def test_bad_inputs_are_reported_and_the_rest_processed(corpus, tmp_path):
    src, _ = corpus
    bad = tmp_path / "in"
    good = _three_files(src, bad, "good")
    data = good[0].read_bytes()
    (bad / "empty.dcm").write_bytes(b"")
    (bad / "notes.txt").write_text("hello")
    (bad / "truncated.dcm").write_bytes(data[: len(data) // 2])
    i = data.find(b"\x10\x00\x20\x00LO")  # PatientID: give it a wrong length
    (bad / "wronglen.dcm").write_bytes(data[: i + 6] + b"\xff\x7f" + data[i + 8 :])
    charset = pydicom.dcmread(good[1])
    charset.SpecificCharacterSet = "ISO_IR 999"
    charset.save_as(bad / "charset.dcm")
    (bad / "loop").mkdir()
    os.symlink("..", bad / "loop" / "again")
    os.symlink("missing-target", bad / "dangling.dcm")
    before = {p.name: p.read_bytes() for p in bad.iterdir() if p.is_file()}
    out = tmp_path / "out"
    proc = cli("deid", bad, out, "--key-file", tmp_path / "k", check=1)
    report = {r["input"]: r for r in map(json.loads, deid_report(out).read_text().splitlines())}
    assert [report[f"good{i}.dcm"]["status"] for i in range(3)] == ["ok"] * 3
    reasons = {name: report[name]["reason"] for name in report if report[name]["status"] != "ok"}
    assert "empty file" in reasons["empty.dcm"]
    assert "DICM" in reasons["notes.txt"]
    assert "truncat" in reasons["truncated.dcm"] or "cut short" in reasons["truncated.dcm"]
    assert "wrong length" in reasons["wronglen.dcm"] or "invalid VR" in reasons["wronglen.dcm"]
    assert "SpecificCharacterSet" in reasons["charset.dcm"]
    assert "loop" in reasons["loop/again"]
    assert "cannot" in reasons["dangling.dcm"]
    assert len(_dcm_files(out)) == 3  # nothing written for the rejected files
    assert {p.name: p.read_bytes() for p in bad.iterdir() if p.is_file()} == before  # untouched
    original = pydicom.dcmread(good[0])
    text = proc.stdout + proc.stderr + deid_report(out).read_text()
    assert str(original.PatientID) not in text


def test_a_cds_dicomdir_is_skipped_under_any_name_and_the_run_exits_0(corpus, tmp_path):
    """A CD's or DVD's index lists each patient's name and ID: never copied, and not a
    failure either (exit 0), whether it is called DICOMDIR or was renamed on the way."""
    src, _ = corpus
    images = [pydicom.dcmread(p) for p in _dcm_files(src)[:2]]
    for n, ds in enumerate(images):
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "S1", 1, n + 1  # the records' keys
    media = tmp_path / "cd"
    dicomdir = write_media(media, images)
    (media / "index.dcm").write_bytes(dicomdir.read_bytes())
    out = tmp_path / "out"
    cli("deid", media, out, "--key-file", tmp_path / "k", "--workers", "2")
    report = {r["input"]: r for r in map(json.loads, deid_report(out).read_text().splitlines())}
    assert {name: r["status"] for name, r in report.items() if r["status"] != "ok"} == {
        "DICOMDIR": "skipped", "index.dcm": "skipped"}
    assert report["index.dcm"]["reason"] == report["DICOMDIR"]["reason"]
    assert sum(r["status"] == "ok" for r in report.values()) == 2
    assert len([p for p in out.rglob("*") if p.is_file()]) == 2  # the two images, no index


def test_usage_errors_exit_2(tmp_path):
    assert cli("deid", tmp_path / "nope", tmp_path / "o", check=None).returncode == 2
    (tmp_path / "in").mkdir()
    assert cli("deid", tmp_path / "in", tmp_path / "in" / "sub", check=None).returncode == 2
    assert cli("deid", check=None).returncode == 2


def test_key_file_is_created_private(tmp_path, corpus):
    src, _ = corpus
    cli("deid", _dcm_files(src)[0], tmp_path / "one.dcm", "--key-file", tmp_path / "new.key")
    assert (tmp_path / "new.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "one.dcm").is_file()


def test_a_one_process_deid_run_to_a_file_loads_no_bars_pool_or_downloader(tmp_path, corpus):
    """Start-up is a cost that no number of workers divides: a run whose output is not a
    terminal draws no progress bars and, with one worker, forks nothing, so it does not
    import rich.progress or multiprocessing's pool; pydicom's example-data downloader
    (urllib.request) stays a stand-in (safepacs.dicom.deferred)."""
    src, _ = corpus
    code = (
        "import os, sys\n"
        "heavy = ('rich.progress', 'concurrent.futures.process', 'urllib.request')\n"
        "end = os._exit\n"
        "def seen(status):\n"
        "    print([m for m in heavy if type(sys.modules.get(m)).__name__ == 'module'], flush=True)\n"
        "    end(status)\n"
        "os._exit = seen  # a deid run ends there (safepacs.cli._leave)\n"
        "from safepacs.cli import main\n"
        "main()\n"
    )
    args = ["deid", _dcm_files(src)[0], tmp_path / "out", "--key-file", tmp_path / "k.key",
            "--no-clean-pixels", "--accept-burned-in-risk"]
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert "ok" in proc.stderr and deid_report(tmp_path / "out").is_file()
    # more workers than pieces of work: no more processes than pieces (here, none)
    args[2] = tmp_path / "out64"
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args), "--workers", "64"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_places_that_cannot_be_written_are_usage_errors_before_any_work(tmp_path, corpus):
    """A report, key, output or delta folder that cannot be made is found before the run,
    not after it (outputs standing without their report) and never as a traceback."""
    src, _ = corpus
    _three_files(src, tmp_path / "in")
    one = tmp_path / "in" / "0.dcm"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    key = ("--key-file", tmp_path / "k")
    for args, why in (
        (("deid", tmp_path / "in", blocker, *key), "a folder INPUT needs a folder OUTPUT"),
        (("deid", tmp_path / "in", tmp_path / "o", "--key-file", blocker / "k"), "cannot create the key file"),
        (("deid", tmp_path / "in", tmp_path / "o", *key, "--report", blocker / "r.jsonl"), "cannot write the report"),
        (("deid", tmp_path / "in", tmp_path / "o", *key, "--delta-dir", blocker), "--delta-dir: cannot make"),
        (("deid", one, blocker / "x.dcm", *key), "OUTPUT: cannot make"),
        (("deid", tmp_path / "in", tmp_path / "o", *key, "--workers", "65"), "65"),
        (("synth", blocker, "--count", "1", "--small"), "OUTPUT is a folder"),
    ):
        proc = cli(*args, check=2)
        text = " ".join((proc.stderr + proc.stdout).split())
        assert why in text and "Traceback" not in text, text
    assert not (tmp_path / "o").exists() and blocker.read_text() == "not a folder\n"


def test_a_deid_run_that_skips_interpreter_teardown_still_delivers_everything(tmp_path, corpus):
    """``safepacs deid`` ends with ``os._exit`` once its command returns (the teardown was
    20-35 ms of every run): its exit status, the piped summary, the report and the outputs
    must all still be complete, for a clean run, a run with a rejected file and a usage error."""
    src, _ = corpus
    inp = tmp_path / "in"
    _three_files(src, inp)
    key = tmp_path / "k.key"
    args = ["--key-file", key, "--no-clean-pixels", "--accept-burned-in-risk"]
    good = cli("deid", inp, tmp_path / "a", *args, "--workers", "2")
    assert "ok" in good.stderr and "report:" in good.stderr  # the summary's last line
    lines = deid_report(tmp_path / "a").read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["ok"] * 3
    assert len(_dcm_files(tmp_path / "a")) == 3
    (inp / "broken.dcm").write_bytes(b"DICM" * 10)
    bad = cli("deid", inp, tmp_path / "b", *args, check=1)
    assert "1 rejected" in bad.stderr and "report:" in bad.stderr
    assert len(deid_report(tmp_path / "b").read_text().splitlines()) == 4
    assert cli("deid", inp, tmp_path / "c", "--workers", "zero", check=2).stderr.strip()


def test_verify_with_key_catches_an_unshifted_date_under_modified_dates(corpus, tmp_path):
    src, _ = corpus
    one = tmp_path / "in"
    one.mkdir()
    first = sorted(src.rglob("*.dcm"))[0]
    shutil.copy(first, one / "a.dcm")
    out = tmp_path / "out"
    cli("deid", one, out, "--key-file", tmp_path / "k", "--retain-long-modified-dates")
    assert cli("verify-deid", one, out, "--key-file", tmp_path / "k").returncode == 0
    produced = _dcm_files(out)[0]
    ds = pydicom.dcmread(produced)
    ds.ContentDate = pydicom.dcmread(first).StudyDate  # a date that was not shifted
    ds.save_as(produced)
    leaked = cli("verify-deid", one, out, "--key-file", tmp_path / "k", check=1)
    assert "ContentDate" in leaked.stdout


def test_the_report_that_names_input_files_is_written_beside_output_not_in_it(corpus, tmp_path):
    """Export folders are often named after the patient.  The report maps each input path
    to its pseudonymous output: inside OUTPUT it would travel with the released data as a
    re-identification key.  verify-deid searches such a report if one is there."""
    src, _ = corpus
    original = pydicom.dcmread(_dcm_files(src)[0])
    surname = str(original.PatientName).split("^")[0]
    assert len(surname) >= 4
    named = tmp_path / "in" / f"{surname}_{original.PatientID}"
    named.mkdir(parents=True)
    shutil.copy(_dcm_files(src)[0], named / "IM0001.dcm")
    out = tmp_path / "release"
    cli("deid", tmp_path / "in", out, "--key-file", tmp_path / "k")
    beside = deid_report(out)
    assert surname in beside.read_text(encoding="utf-8")  # the user's own record
    released = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert surname.encode() not in released and str(original.PatientID).encode() not in released
    cli("verify-deid", tmp_path / "in", out, check=0)
    shutil.copy(beside, out / "safepacs-deid-report.jsonl")  # where it once was written
    proc = cli("verify-deid", tmp_path / "in", out, check=1)
    assert "safepacs-deid-report.jsonl" in proc.stdout


def test_a_report_key_or_deltas_inside_output_or_input_are_usage_errors(corpus, tmp_path):
    """Everything in OUTPUT is meant for release: the report, the key and the deltas stay apart."""
    src, _ = corpus
    _three_files(src, tmp_path / "in")
    args = ("--key-file", tmp_path / "k")
    proc = cli("deid", tmp_path / "in", tmp_path / "o", *args, "--report", tmp_path / "in" / "r.jsonl", check=2)
    assert "outside INPUT" in proc.stderr + proc.stdout
    proc = cli("deid", tmp_path / "in", tmp_path / "o", *args, "--delta-dir", tmp_path / "in" / "d", check=2)
    assert "--delta-dir must lie outside INPUT" in proc.stderr + proc.stdout
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["0.dcm", "1.dcm", "2.dcm"]
    for option, value in (("--report", "r.jsonl"), ("--key-file", "site.key"), ("--delta-dir", "deltas")):
        inside = ["--key-file", tmp_path / "k"] if option != "--key-file" else []
        proc = cli("deid", tmp_path / "in", tmp_path / "o", *inside, option, tmp_path / "o" / value, check=2)
        assert f"{option} must not lie inside OUTPUT" in proc.stderr + proc.stdout
    assert not (tmp_path / "o").exists()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere: the check cannot refuse it
        proc = cli("deid", tmp_path / "in", locked / "out", *args, check=2)
        assert "pass --report" in proc.stderr + proc.stdout
    assert not (tmp_path / "o").exists()


def test_originals_inside_output_are_a_usage_error(corpus, tmp_path):
    """A folder meant for release must not hold the originals: neither a folder nor a file
    INPUT may lie inside a folder OUTPUT."""
    src, _ = corpus
    (tmp_path / "release").mkdir()
    _three_files(src, tmp_path / "release" / "originals")
    args = ("--key-file", tmp_path / "k", "--report", tmp_path / "r.jsonl")
    for given in (tmp_path / "release" / "originals", tmp_path / "release" / "originals" / "0.dcm"):
        proc = cli("deid", given, tmp_path / "release", *args, check=2)
        assert "INPUT must not lie inside OUTPUT" in proc.stderr + proc.stdout
    assert sorted(p.name for p in (tmp_path / "release").rglob("*")) == ["0.dcm", "1.dcm", "2.dcm", "originals"]


def test_restore_never_writes_into_deid_or_deltas(corpus, tmp_path):
    """The restored originals carry identity: not into the release folder (nor over its files),
    not among the deltas.  Each refusal is a usage error and leaves both folders as they were."""
    src, _ = corpus
    _three_files(src, tmp_path / "in")
    out, deltas = tmp_path / "out", tmp_path / "deltas"
    cli("deid", tmp_path / "in", out, "--key-file", tmp_path / "k", "--delta-dir", deltas)
    before = {p: p.read_bytes() for p in [*out.rglob("*"), *deltas.rglob("*")] if p.is_file()}
    for target, why in ((out, "OUTPUT must not be DEID"), (out / "back", "OUTPUT must not be DEID"),
                        (deltas, "OUTPUT must not be DELTAS"), (deltas / "back", "OUTPUT must not be DELTAS")):
        proc = cli("restore", out, deltas, target, "--key-file", tmp_path / "k", check=2)
        assert why in proc.stderr + proc.stdout
    one = next(out.rglob("*.dcm"))
    proc = cli("restore", one, deltas, one, "--key-file", tmp_path / "k", check=2)
    assert "OUTPUT must not be DEID" in proc.stderr + proc.stdout
    after = {p: p.read_bytes() for p in [*out.rglob("*"), *deltas.rglob("*")] if p.is_file()}
    assert after == before
    proc = cli("restore", out, deltas, tmp_path / "back", "--key-file", tmp_path / "k")
    assert "safepacs restore" in proc.stderr + proc.stdout
    restored = _dcm_files(tmp_path / "back")
    assert len(restored) == 3
    # identified again: only the owner may look
    assert (tmp_path / "back").stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in restored} == {0o600}


def test_demo_replaces_only_a_demo_folder(tmp_path):
    """The demo empties its folder first: never a folder it did not make."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work\n")
    proc = cli("demo", mine, "--count", "3", check=2)
    assert "not a demo's folder" in " ".join((proc.stderr + proc.stdout).split())
    assert [p.name for p in mine.iterdir()] == ["thesis.txt"]
    folder = tmp_path / "demo"
    for _ in range(2):  # a second run replaces the first
        cli("demo", folder, "--count", "3")
        assert (folder / ".safepacs-demo").is_file() and len(_dcm_files(folder / "restored")) == 3


def test_a_link_planted_at_the_reports_temp_name_is_not_written_through(tmp_path, corpus):
    """The report's temp name is predictable (OUTPUT.safepacs-deid-report.jsonl.part): in a
    shared folder a link planted there must not make the run overwrite its target."""
    src, _ = corpus
    _three_files(src, tmp_path / "in")
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's\n")
    (tmp_path / "o.safepacs-deid-report.jsonl.part").symlink_to(victim)
    cli("deid", tmp_path / "in", tmp_path / "o", "--key-file", tmp_path / "k")
    assert victim.read_text() == "someone else's\n"
    assert len(deid_report(tmp_path / "o").read_text().splitlines()) == 3
    assert deid_report(tmp_path / "o").stat().st_mode & 0o777 == 0o600  # it names the inputs
