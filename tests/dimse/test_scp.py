"""DCMTK's echoscu, storescu, findscu, getscu and movescu against the SCP on a real archive."""

from __future__ import annotations

import io
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from safepacs.archive.service import Archive
from safepacs.dimse import start
from safepacs.synth import generate
from tests.people import reader

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dcmtk(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("dimsecorpus")
    generate(root / "in", 12, 8, small=True)
    return sorted((root / "in").rglob("*.dcm"))


@pytest.fixture(scope="module")
def scp(tmp_path_factory):
    archive, _ = Archive.create(tmp_path_factory.mktemp("dimsearchive"))
    archive.create_token("dimse-reader")  # the service account DCMTK's query tools act for
    dest_port = free_port()
    port = free_port()
    callers = [{"ae_title": ae, "host": "127.0.0.1", "account": "dimse-reader"}
               for ae in ("FINDSCU", "GETSCU", "MOVESCU")]
    callers += [{"ae_title": "SPOOFED", "host": "10.9.9.9", "account": "dimse-reader"},
                {"ae_title": "*", "host": "127.0.0.1"}]
    server = start(archive, host="127.0.0.1", port=port, ae_title="SAFEPACS", allowed_callers=callers,
                   move_destinations={"DEST": {"host": "127.0.0.1", "port": dest_port, "callers": ["MOVESCU"]}})
    yield archive, port, dest_port
    server.shutdown()
    archive.close()


@pytest.fixture(scope="module")
def stored(scp, corpus):
    archive, port, _ = scp
    r = dcmtk("storescu", "-aet", "TESTSCU", "-aec", "SAFEPACS", "127.0.0.1", str(port), *map(str, corpus))
    assert r.returncode == 0, r.stderr
    return archive


def test_echo(scp):
    r = dcmtk("echoscu", "-aet", "TESTSCU", "-aec", "SAFEPACS", "127.0.0.1", str(scp[1]))
    assert r.returncode == 0, r.stderr


def test_storescu_stores_every_file_de_identified(stored, corpus):
    rows = stored.search("instance", {}, principal=reader(stored))
    assert len(rows) == len(corpus)
    originals = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in corpus}
    assert not originals & {str(r.SOPInstanceUID) for r in rows}


def test_storing_again_is_a_duplicate_not_a_second_copy(stored, scp, corpus):
    r = dcmtk("storescu", "-aec", "SAFEPACS", "127.0.0.1", str(scp[1]), str(corpus[0]))
    assert r.returncode == 0
    assert len(stored.search("instance", {}, principal=reader(stored))) == len(corpus)


def test_the_same_object_re_encoded_by_storescu_is_a_duplicate_not_a_conflict(stored, scp, corpus):
    """storescu -xi sends implicit VR only: DCMTK re-encodes the (explicit VR) file on the way.
    The object is the one stored, so the sender gets success, not 0x0111."""
    r = dcmtk("storescu", "-v", "-xi", "-aec", "SAFEPACS", "127.0.0.1", str(scp[1]), str(corpus[1]))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Little Endian Implicit" in out or "ImplicitVRLittleEndian" in out or "1.2.840.10008.1.2\n" in out
    assert not re.search(r"status: 0x0*111\b", out, re.I)
    assert len(stored.search("instance", {}, principal=reader(stored))) == len(corpus)


def test_conflicting_object_gets_0111_and_changes_nothing(stored, scp, corpus, tmp_path):
    raw = bytearray(corpus[0].read_bytes())
    raw[-1] ^= 0xFF
    bad = tmp_path / "conflict.dcm"
    bad.write_bytes(bytes(raw))
    r = dcmtk("storescu", "-v", "-aec", "SAFEPACS", "127.0.0.1", str(scp[1]), str(bad))
    assert re.search(r"status: 0x0*111\b", r.stdout + r.stderr, re.I)
    assert len(stored.search("instance", {}, principal=reader(stored))) == len(corpus)


def _find(port: int, out: Path, *keys: str, root: str = "-S", aet: str = "FINDSCU") -> list[pydicom.Dataset]:
    out.mkdir(exist_ok=True)
    args = ["findscu", root, "-aet", aet, "-aec", "SAFEPACS", "-X", "-od", str(out), "127.0.0.1", str(port)]
    for k in keys:
        args += ["-k", k]
    r = dcmtk(*args)
    assert r.returncode == 0, r.stderr
    return [pydicom.dcmread(f) for f in sorted(out.glob("rsp*.dcm"))]


def test_find_study_root_and_patient_root(stored, scp, tmp_path):
    studies = stored.search("study", {}, principal=reader(stored))
    got = _find(scp[1], tmp_path / "s", "QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientID")
    assert {str(d.StudyInstanceUID) for d in got} == {str(s.StudyInstanceUID) for s in studies}
    assert all("PatientName" not in d for d in got)  # only the keys asked for
    pid = str(studies[0].PatientID)
    one = _find(scp[1], tmp_path / "p", "QueryRetrieveLevel=PATIENT", f"PatientID={pid}", "PatientName", root="-P")
    assert [str(d.PatientID) for d in one] == [pid]
    series = _find(scp[1], tmp_path / "se", "QueryRetrieveLevel=SERIES",
                   f"StudyInstanceUID={studies[0].StudyInstanceUID}", "SeriesInstanceUID", "Modality")
    assert series and all(d.Modality for d in series)


def test_get_study_retrieves_every_instance(stored, scp, tmp_path):
    study = stored.search("study", {}, principal=reader(stored))[0]
    expected = {r.sop_uid for r in stored.instances(study_uid=str(study.StudyInstanceUID), principal=reader(stored))}
    r = dcmtk("getscu", "-S", "-aec", "SAFEPACS", "-od", str(tmp_path), "127.0.0.1", str(scp[1]),
              "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study.StudyInstanceUID}")
    assert r.returncode == 0, r.stderr
    files = list(tmp_path.iterdir())
    assert {str(pydicom.dcmread(f).SOPInstanceUID) for f in files} == expected
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.PatientIdentityRemoved == "YES"


def test_move_to_configured_destination(stored, scp, tmp_path):
    archive, port, dest_port = scp
    study = archive.search("study", {}, principal=reader(archive))[-1]
    expected = {r.sop_uid for r in archive.instances(study_uid=str(study.StudyInstanceUID), principal=reader(archive))}
    r = _move(port, dest_port, str(study.StudyInstanceUID), tmp_path)
    assert r.returncode == 0, r.stderr
    assert {str(pydicom.dcmread(f).SOPInstanceUID) for f in tmp_path.iterdir()} == expected


def test_callers_without_an_account_or_from_the_wrong_address_get_nothing(stored, scp, tmp_path):
    """An AE title bound to an account at another address (spoofed), or bound to none, may
    associate (it may store) but reads nothing: 0x0124, not authorised, and no data."""
    port = str(scp[1])
    study = stored.search("study", {}, principal=reader(stored))[0]
    for aet in ("SPOOFED", "NOBODY"):
        find = dcmtk("findscu", "-v", "-S", "-aet", aet, "-aec", "SAFEPACS", "-X", "-od", str(tmp_path),
                     "127.0.0.1", port, "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID")
        assert re.search(r"0x0?124\b|Refused: *Not *Authori", find.stdout + find.stderr, re.I), find.stdout
        get = dcmtk("getscu", "-v", "-S", "-aet", aet, "-aec", "SAFEPACS", "-od", str(tmp_path), "127.0.0.1",
                    port, "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study.StudyInstanceUID}")
        assert re.search(r"0x0?124\b|Not *Authori", get.stdout + get.stderr, re.I), get.stdout
    assert not [f for f in tmp_path.iterdir() if f.suffix == ".dcm" or f.name.startswith(("rsp", "CR", "DX", "CT"))]


def test_move_destination_bound_to_other_callers_is_refused(stored, scp, tmp_path):
    study = stored.search("study", {}, principal=reader(stored))[0]
    r = dcmtk("movescu", "-v", "-S", "-aet", "GETSCU", "-aec", "SAFEPACS", "-aem", "DEST", "127.0.0.1",
              str(scp[1]), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study.StudyInstanceUID}")
    assert r.returncode != 0 or re.search(r"0xa801", r.stdout + r.stderr, re.I)


def test_move_to_unknown_destination_is_refused(stored, scp, tmp_path):
    study = stored.search("study", {}, principal=reader(stored))[0]
    r = dcmtk("movescu", "-v", "-S", "-aec", "SAFEPACS", "-aem", "ELSEWHERE", "127.0.0.1", str(scp[1]),
              "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study.StudyInstanceUID}")
    assert r.returncode != 0 or re.search(r"0xa801", r.stdout + r.stderr, re.I)


def test_caller_not_on_the_allow_list_is_rejected(tmp_path):
    archive, _ = Archive.create(tmp_path / "a")
    port = free_port()
    server = start(archive, host="127.0.0.1", port=port, ae_title="SAFEPACS",
                   allowed_callers=[{"ae_title": "MODALITY1", "host": "127.0.0.1"}])
    try:
        refused = dcmtk("echoscu", "-aet", "INTRUDER", "-aec", "SAFEPACS", "127.0.0.1", str(port))
        accepted = dcmtk("echoscu", "-aet", "MODALITY1", "-aec", "SAFEPACS", "127.0.0.1", str(port))
    finally:
        server.shutdown()
        archive.close()
    assert refused.returncode != 0
    assert accepted.returncode == 0


def test_bad_identifiers_get_failure_statuses_not_answers(stored, scp, tmp_path):
    port = str(scp[1])
    bad_level = dcmtk("findscu", "-v", "-S", "-aec", "SAFEPACS", "127.0.0.1", port, "-k", "QueryRetrieveLevel=BOGUS",
                      "-k", "StudyInstanceUID")
    assert re.search(r"0xa900|DataSetDoesNotMatchSOPClass", bad_level.stdout + bad_level.stderr, re.I)
    bad_date = dcmtk("findscu", "-v", "-S", "-aec", "SAFEPACS", "127.0.0.1", port, "-k", "QueryRetrieveLevel=STUDY",
                     "-k", "StudyDate=2024-01-01-")
    assert re.search(r"0xa900|DataSetDoesNotMatchSOPClass", bad_date.stdout + bad_date.stderr, re.I)
    no_key = dcmtk("getscu", "-v", "-S", "-aec", "SAFEPACS", "-od", str(tmp_path), "127.0.0.1", port,
                   "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyDescription=*")
    assert re.search(r"0xa900|DataSetDoesNotMatchSOPClass", no_key.stdout + no_key.stderr, re.I)
    assert not list(tmp_path.iterdir())


def test_received_object_is_handed_on_exactly_as_pynetdicom_encodes_it(corpus):
    """``part10`` saves a copy of the dataset; the bytes must be those of encoded_dataset."""
    from pynetdicom import evt

    from safepacs.dimse.scp import make_ae, part10

    seen: list[tuple[bytes, bytes]] = []

    def on_store(event):  # type: ignore[no-untyped-def]
        seen.append((part10(event), event.encoded_dataset(include_meta=True)))
        return 0x0000

    port = free_port()
    server = make_ae("CHECK").start_server(("127.0.0.1", port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        r = dcmtk("storescu", "-aet", "TESTSCU", "-aec", "CHECK", "127.0.0.1", str(port), *map(str, corpus[:3]))
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stderr
    assert len(seen) == 3
    for fast, reference in seen:
        assert fast == reference
        assert pydicom.dcmread(io.BytesIO(fast)).SOPInstanceUID


def test_p_data_decoder_gives_what_pynetdicoms_decoder_gives_without_copies():
    import os

    from pynetdicom.pdu import P_DATA_TF
    from pynetdicom.pdu_primitives import P_DATA

    from safepacs.dimse.scp import decode_p_data

    primitive = P_DATA()
    primitive.presentation_data_value_list = [[1, b"\x02" + os.urandom(5000)], [3, b"\x03cmd"], [5, b"\x00"]]
    pdu = P_DATA_TF()
    pdu.from_primitive(primitive)
    encoded = bytearray(pdu.encode())
    theirs, ours = P_DATA_TF(), P_DATA_TF()
    theirs.decode(bytes(encoded))
    decode_p_data(ours, encoded)

    def items(p):  # type: ignore[no-untyped-def]
        return [(i.presentation_context_id, bytes(i.presentation_data_value)) for i in p.presentation_data_value_items]

    assert items(ours) == items(theirs)
    assert isinstance(ours.presentation_data_value_items[0].presentation_data_value, memoryview)
    truncated = encoded[:-10]
    truncated[2:6] = (len(truncated) - 6).to_bytes(4, "big")
    with pytest.raises(ValueError):
        decode_p_data(P_DATA_TF(), truncated)


def test_a_retired_storage_class_is_accepted(scp, corpus, tmp_path):
    """An old ultrasound machine sends US Image Storage (Retired): refusing the association
    (as pynetdicom's current-only list did) would lose the image."""
    archive, port, _ = scp
    ds = pydicom.dcmread(next(f for f in corpus if pydicom.dcmread(f, stop_before_pixels=True).Modality == "US"))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    path = tmp_path / "us-retired.dcm"
    ds.save_as(path)
    before = len(archive.search("instance", {}, principal=reader(archive)))
    # -R: propose the file's own class (storescu's default list has no retired ones)
    r = dcmtk("storescu", "-R", "-aec", "SAFEPACS", "127.0.0.1", str(port), str(path))
    assert r.returncode == 0, r.stderr
    assert len(archive.search("instance", {}, principal=reader(archive))) == before + 1


def _stored_anew(scp, tmp_path: Path, sample: str, propose: str) -> tuple[pydicom.Dataset, str]:
    """pydicom's ``sample`` stored through storescu (``propose``: its syntax option) as a new
    study; (the sent dataset, the stored study's UID)."""
    from pydicom.data import get_testdata_file

    archive, port, _ = scp
    ds = pydicom.dcmread(get_testdata_file(sample))
    ds.BurnedInAnnotation = "NO"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "in.dcm")

    def studies() -> set[str]:
        return {str(s.StudyInstanceUID) for s in archive.search("study", {}, principal=reader(archive), limit=1000)}

    before = studies()
    r = dcmtk("storescu", propose, "-aec", "SAFEPACS", "127.0.0.1", str(port), str(tmp_path / "in.dcm"))
    assert r.returncode == 0, r.stderr
    [study] = studies() - before
    return ds, study


def _move(port: int, dest_port: int, study: str, out: Path) -> subprocess.CompletedProcess:
    """movescu of ``study`` to DEST, a storescp (its defaults) writing into ``out``."""
    dest = subprocess.Popen(["storescp", "-aet", "DEST", "-od", str(out), str(dest_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        return dcmtk("movescu", "-S", "-aec", "SAFEPACS", "-aem", "DEST", "127.0.0.1", str(port),
                     "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}")
    finally:
        dest.terminate()
        dest.wait(10)


@pytest.mark.parametrize("sample,propose", [("MR_small_jp2klossless.dcm", "-xv"), ("MR_small_RLE.dcm", "-xr"),
                                            ("MR_small_bigendian.dcm", "-xb")])
def test_getscu_gets_compressed_and_big_endian_objects_in_a_syntax_it_accepted(scp, tmp_path, sample, propose):
    """getscu proposes uncompressed little endian only: an object stored compressed (or big
    endian) is converted for it instead of failing the sub-operation (0xA702), with the
    same pixel values."""
    ds, study = _stored_anew(scp, tmp_path, sample, propose)
    out = tmp_path / "got"
    out.mkdir()
    r = dcmtk("getscu", "-S", "-aec", "SAFEPACS", "-od", str(out), "127.0.0.1", str(scp[1]),
              "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}")
    assert r.returncode == 0 and "0xa702" not in (r.stdout + r.stderr).lower(), r.stderr
    [got] = list(out.iterdir())
    received = pydicom.dcmread(got)
    assert not received.file_meta.TransferSyntaxUID.is_compressed
    assert received.file_meta.TransferSyntaxUID != pydicom.uid.ExplicitVRBigEndian
    assert (received.pixel_array == ds.pixel_array).all()


def test_move_converts_a_compressed_object_for_a_destination_taking_uncompressed_only(scp, tmp_path):
    """storescp accepts uncompressed syntaxes only by default: a JPEG 2000 object is
    decompressed for it instead of failing the sub-operation."""
    ds, study = _stored_anew(scp, tmp_path, "MR_small_jp2klossless.dcm", "-xv")
    out = tmp_path / "dest"
    out.mkdir()
    r = _move(scp[1], scp[2], study, out)
    assert r.returncode == 0, r.stderr
    [got] = list(out.iterdir())
    received = pydicom.dcmread(got)
    assert not received.file_meta.TransferSyntaxUID.is_compressed
    assert (received.pixel_array == ds.pixel_array).all()


def test_an_object_whose_offset_table_cannot_be_right_is_converted_whole():
    """GDCM's example 00191113.dcm (JPEG Lossless, four frames, five wrong offsets) reached
    getscu decompressed as three frames, NumberOfFrames changed to match: pydicom trusts the
    table. Read by its fragments, every frame arrives."""
    from types import SimpleNamespace

    from pydicom.data import get_testdata_file

    from safepacs.dimse.scp import in_accepted_syntax
    from tests.deid.pixels.test_frames import with_wrong_offset_table

    good = pydicom.dcmread(get_testdata_file("emri_small_RLE.dcm"))
    bad = with_wrong_offset_table(good)
    context = SimpleNamespace(abstract_syntax=str(bad.SOPClassUID), as_scu=True,
                              transfer_syntax=[pydicom.uid.ExplicitVRLittleEndian])
    sent = in_accepted_syntax(bad, [context])
    assert sent.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert int(sent.NumberOfFrames) == 10
    assert (sent.pixel_array == good.pixel_array).all()
    assert sent.SOPInstanceUID == bad.SOPInstanceUID  # the same instance, not a new one


def test_an_object_whose_frames_do_not_match_its_frame_count_is_not_converted():
    """pydicom's decompress sets NumberOfFrames to what it decoded: an RLE object that says
    three frames but holds two fragments went out as a two-frame object. It is sent as
    stored (the receiver then refuses it) rather than changed."""
    from types import SimpleNamespace

    from pydicom.data import get_testdata_file

    from safepacs.dimse.scp import in_accepted_syntax

    stored = pydicom.dcmread(get_testdata_file("SC_rgb_2frame.dcm"))
    stored.compress(pydicom.uid.RLELossless)
    stored.NumberOfFrames = 3
    pixels = stored.PixelData
    context = SimpleNamespace(abstract_syntax=str(stored.SOPClassUID), as_scu=True,
                              transfer_syntax=[pydicom.uid.ExplicitVRLittleEndian])
    sent = in_accepted_syntax(stored, [context])
    assert sent.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    assert int(sent.NumberOfFrames) == 3 and sent.PixelData == pixels
