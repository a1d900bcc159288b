"""Ingest and retrieval: de-identified at the door, sealed at rest, stored once."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pydicom
import pytest

from safepacs.archive import Conflict, IntegrityError, NotFound
from safepacs.errors import InvalidDicom, RejectedFile
from tests.archive.objects import ct_bytes, segment_start
from tests.people import reader


def _blobs(archive_dir: Path, suffix: str) -> list[Path]:
    return sorted(p for p in (archive_dir / "blobs").rglob(f"*.{suffix}") if ".tmp" not in p.parts)


def test_ingest_stores_the_deidentified_object_and_read_returns_it(archive, archive_dir):
    arch, _ = archive
    data = ct_bytes()
    stored = arch.ingest(data, source="test")
    assert stored.status == "stored"
    assert stored.sop_instance_uid.startswith("2.25.") and stored.study_uid.startswith("2.25.")
    assert "99.1.3" not in stored.original_sop_instance_uid_hash
    out = pydicom.dcmread(io.BytesIO(arch.read_instance(stored.sop_instance_uid, principal=reader(arch))))
    assert out.SOPInstanceUID == stored.sop_instance_uid
    assert out.PatientIdentityRemoved == "YES"
    assert str(out.PatientName) == "" and out.PatientID != "PID7734120"
    assert out.PixelData == pydicom.dcmread(io.BytesIO(data)).PixelData
    assert len(_blobs(archive_dir, "obj")) == 1 and len(_blobs(archive_dir, "dlt")) == 1


def test_same_object_twice_is_a_duplicate_stored_once(archive, archive_dir):
    arch, _ = archive
    first = arch.ingest(ct_bytes(), source="a")
    again = arch.ingest(ct_bytes(), source="b")
    assert again.status == "duplicate"
    assert again.sop_instance_uid == first.sop_instance_uid
    assert arch.status()["instances"] == 1
    assert len(_blobs(archive_dir, "obj")) == 1


def test_the_same_object_encoded_otherwise_is_a_duplicate_not_a_conflict(archive, archive_dir):
    """Sent again through another door (DCMTK's storescu re-encodes: implicit VR, padding,
    sequence lengths), the same object is the same: refusing it as 'other content' told the
    sender that a stored object had failed."""
    arch, _ = archive
    first = arch.ingest(ct_bytes(), source="stow")
    before = arch.read_instance(first.sop_instance_uid, principal=reader(arch))
    ds = pydicom.dcmread(io.BytesIO(ct_bytes()))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.StudyDescription = str(ds.get("StudyDescription", "")) + " " * (len(str(ds.get("StudyDescription", ""))) % 2)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert buf.getvalue() != ct_bytes()
    again = arch.ingest(buf.getvalue(), source="c-store")
    assert again.status == "duplicate" and again.sop_instance_uid == first.sop_instance_uid
    assert arch.read_instance(first.sop_instance_uid, principal=reader(arch)) == before  # the first kept
    assert arch.status()["instances"] == 1 and len(_blobs(archive_dir, "obj")) == 1


def test_same_uid_with_other_content_is_a_conflict_and_harms_nothing(archive, archive_dir):
    arch, _ = archive
    stored = arch.ingest(ct_bytes(pixel=1), source="a")
    before = arch.read_instance(stored.sop_instance_uid, principal=reader(arch))
    with pytest.raises(Conflict):
        arch.ingest(ct_bytes(pixel=2), source="b")
    assert arch.read_instance(stored.sop_instance_uid, principal=reader(arch)) == before
    assert len(_blobs(archive_dir, "obj")) == 1


def test_rows_hashed_with_sha256_by_older_versions_still_tell_duplicates_from_conflicts(archive):
    import hashlib

    from sqlalchemy import select, update

    from safepacs.index.models import Instance

    arch, _ = archive
    stored = arch.ingest(ct_bytes(pixel=1), source="a")
    with arch._engine.begin() as conn:
        current = conn.scalar(select(Instance.content_hash).where(Instance.sop_uid == stored.sop_instance_uid))
        assert current.startswith("b3:") and len(current) <= 64  # fits the column everywhere
        body = arch.read_instance(stored.sop_instance_uid, principal=reader(arch))
        legacy = hashlib.sha256(body).hexdigest()  # what an archive before BLAKE3 stored
        conn.execute(update(Instance).where(Instance.sop_uid == stored.sop_instance_uid).values(content_hash=legacy))
    assert arch.ingest(ct_bytes(pixel=1), source="b").status == "duplicate"
    with pytest.raises(Conflict):
        arch.ingest(ct_bytes(pixel=2), source="c")
    assert arch.status()["instances"] == 1


def test_flipped_byte_in_a_blob_is_an_integrity_error_never_wrong_data(archive, archive_dir):
    arch, _ = archive
    stored = arch.ingest(ct_bytes(), source="a")
    (blob,) = _blobs(archive_dir, "obj")
    raw = bytearray(blob.read_bytes())
    for where in (5, 40, len(raw) // 2, len(raw) - 1):
        damaged = bytearray(raw)
        damaged[where] ^= 0x20
        blob.write_bytes(bytes(damaged))
        with pytest.raises(IntegrityError):
            arch.read_instance(stored.sop_instance_uid, principal=reader(arch))
    blob.write_bytes(bytes(raw[:100]))
    with pytest.raises(IntegrityError):
        arch.read_instance(stored.sop_instance_uid, principal=reader(arch))
    blob.unlink()
    with pytest.raises(IntegrityError):
        arch.read_instance(stored.sop_instance_uid, principal=reader(arch))


@pytest.mark.parametrize("data", [b"", b"GARBAGE" * 40, ct_bytes()[:-20], ct_bytes()[:300]])
def test_bad_input_is_refused_and_leaves_nothing(archive, archive_dir, data):
    arch, _ = archive
    with pytest.raises(InvalidDicom) as err:
        arch.ingest(data, source="x")
    assert "ZHANG" not in str(err.value) and "PID7734120" not in str(err.value)
    assert arch.status()["instances"] == 0
    assert _blobs(archive_dir, "obj") == [] and _blobs(archive_dir, "dlt") == []


def _us_bytes() -> bytes:
    """A small object whose kind usually carries burned-in text (ultrasound, flag absent)."""
    ds = pydicom.dcmread(io.BytesIO(ct_bytes()))
    ds.Modality = "US"
    del ds.BurnedInAnnotation
    fp = io.BytesIO()
    ds.save_as(fp)
    return fp.getvalue()


def test_object_at_risk_of_burned_in_text_is_pixel_cleaned_at_the_door(archive):
    arch, _ = archive
    stored = arch.ingest(_us_bytes(), source="x")
    out = pydicom.dcmread(io.BytesIO(arch.read_instance(stored.sop_instance_uid, principal=reader(arch))))
    assert out.BurnedInAnnotation == "NO"
    codes = {item.CodeValue for item in out.DeidentificationMethodCodeSequence}
    assert {"113100", "113101"} <= codes


def test_a_codec_panic_at_the_door_is_a_refusal_that_stores_nothing(archive, archive_dir, monkeypatch):
    """The door decodes an ultrasound's pixels to clean them; pylibjpeg-rle panics (a
    BaseException) on a damaged segment: with no other decoder to try, the object is refused
    like any malformed one."""
    from safepacs.deid.pixels import frames
    from safepacs.errors import SafepacsError
    from tests.dicom.test_panics import panicking_rle

    monkeypatch.setattr(frames, "_PLUGIN_ORDER", ("pylibjpeg",))  # pydicom's own RLE decoder is lenient
    arch, _ = archive
    with pytest.raises(SafepacsError, match="cannot be decoded"):
        arch.ingest(panicking_rle(Modality="US"), source="x")
    assert arch.status()["instances"] == 0
    assert _blobs(archive_dir, "obj") == [] and _blobs(archive_dir, "dlt") == []


def test_site_that_turns_pixel_cleaning_off_refuses_objects_at_risk(tmp_path):
    from safepacs.archive import Archive
    from safepacs.deid.options import Options

    arch, _ = Archive.create(tmp_path / "a", deid_options=Options(clean_pixels="never"))
    try:
        with pytest.raises(RejectedFile):
            arch.ingest(_us_bytes(), source="x")
        assert arch.status()["instances"] == 0
    finally:
        arch.close()


def test_concurrent_ingest_stores_each_object_once(archive, archive_dir):
    arch, _ = archive
    objects = [ct_bytes(f"1.2.3.{i}", series=f"1.2.3.9.{i % 2}") for i in range(6)]
    results, errors = [], []

    def send(data: bytes) -> None:
        try:
            results.append(arch.ingest(data, source="t"))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(d,)) for d in objects * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.status for r in results).count("stored") == 6
    status = arch.status()
    assert (status["studies"], status["series"], status["instances"]) == (1, 2, 6)
    assert len(_blobs(archive_dir, "obj")) == 6


def test_instances_and_metadata(archive):
    arch, _ = archive
    a = arch.ingest(ct_bytes("1.2.3.1"), source="t")
    arch.ingest(ct_bytes("1.2.3.2", series="1.2.3.77"), source="t")
    refs = arch.instances(study_uid=a.study_uid, principal=reader(arch))
    assert [r.sop_uid for r in refs][0] == a.sop_instance_uid and len(refs) == 2
    assert len(arch.instances(study_uid=a.study_uid, series_uid=a.series_uid, principal=reader(arch))) == 1
    assert refs[0].size > 0 and refs[0].transfer_syntax_uid == "1.2.840.10008.1.2.1"
    meta = arch.metadata(a.sop_instance_uid, principal=reader(arch))
    assert "PixelData" not in meta and meta.SOPInstanceUID == a.sop_instance_uid


@pytest.mark.parametrize("uid", ["2.25.1", "../../etc/passwd", "1.2.*", ""])
def test_unknown_or_malformed_uids_are_not_found(archive, uid):
    arch, _ = archive
    arch.ingest(ct_bytes(), source="t")
    with pytest.raises(NotFound):
        arch.instances(study_uid=uid, principal=reader(arch))
    with pytest.raises(NotFound):
        arch.read_instance(uid, principal=reader(arch))


def test_tokens_authenticate_and_only_their_hash_is_kept(archive, archive_dir):
    arch, token = archive
    who = arch.authenticate(token)
    assert (who.username, who.role, who.via) == ("reader", "service", "api-token")
    other = arch.create_token("gateway")
    assert arch.authenticate(other).username == "gateway"
    assert arch.authenticate("sp_wrong") is None and arch.authenticate("") is None
    if (archive_dir / "index.sqlite").exists():
        assert other.encode() not in (archive_dir / "index.sqlite").read_bytes()


def test_status_counts_and_health(archive):
    arch, _ = archive
    arch.ingest(ct_bytes(), source="t")
    status = arch.status()
    assert status["instances"] == 1 and status["patients"] == 1
    assert status["bytes_stored"] > status["bytes_deidentified"] > 0
    assert status["database"] == "ok" and status["store"] == "ok"


def test_archive_on_an_s3_store(tmp_path, s3_url):
    """The same service on an S3-compatible store (s3rver): store, read, detect tampering,
    and remove orphans at open."""
    from safepacs.archive import Archive
    from safepacs.store.blobs import new_names, open_store

    arch, _ = Archive.create(tmp_path / "a", store_url=s3_url)
    stored = arch.ingest(ct_bytes(), source="t")
    data = arch.read_instance(stored.sop_instance_uid, principal=reader(arch))
    assert pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID == stored.sop_instance_uid
    arch.close()
    store = open_store(s3_url)
    names = sorted(store.names())
    assert [n.rsplit(".", 1)[1] for n in names] == ["dlt", "obj"]
    obj = next(n for n in names if n.endswith(".obj"))
    good = bytes(store.get(obj))
    [orphan] = new_names("obj")
    store.put(orphan, b"left by a crash")
    store.put("ff/not-ours.obj", b"another tool's")
    store.put(obj, good[:-1] + bytes([good[-1] ^ 1]))
    again = Archive.open(tmp_path / "a")
    try:
        assert again.recovery is not None and again.recovery.orphans_removed == 1
        assert again.recovery.foreign_left == 1
        assert orphan not in set(store.names()) and bytes(store.get("ff/not-ours.obj")) == b"another tool's"
        with pytest.raises(IntegrityError):
            again.read_instance(stored.sop_instance_uid, principal=reader(again))
        store.put(obj, good)
        assert again.read_instance(stored.sop_instance_uid, principal=reader(again)) == data
    finally:
        again.close()


def test_two_archive_instances_writing_the_same_study_at_once(archive, archive_dir, database_url):
    """Like an import running beside the server: two writers, one database."""
    from safepacs.archive import Archive

    arch, _ = archive
    other = Archive.open(archive_dir, database_url=database_url)
    objects = [ct_bytes(f"1.2.6.{i}", series=f"1.2.6.9.{i % 3}") for i in range(12)]
    errors: list[Exception] = []

    def send(target, data: bytes) -> None:  # type: ignore[no-untyped-def]
        try:
            target.ingest(data, source="t")
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=((arch, other)[i % 2], d)) for i, d in enumerate(objects)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        other.close()
    assert errors == []
    status = arch.status()
    assert (status["patients"], status["studies"], status["series"], status["instances"]) == (1, 1, 3, 12)
    (study,) = arch.search("study", {}, principal=reader(arch))
    assert (study.NumberOfStudyRelatedSeries, study.NumberOfStudyRelatedInstances) == (3, 12)


def test_read_instance_checks_study_series_and_transfer_syntax_in_one_call(archive):
    from safepacs.archive import NotAcceptable

    arch, _ = archive
    a = arch.ingest(ct_bytes("1.2.3.1"), source="t")
    b = arch.ingest(ct_bytes("1.2.3.2", study="1.2.3.99", series="1.2.3.98"), source="t")
    whole = arch.read_instance(a.sop_instance_uid, principal=reader(arch))
    assert arch.read_instance(a.sop_instance_uid, principal=reader(arch), study_uid=a.study_uid,
                              series_uid=a.series_uid) == whole
    with pytest.raises(NotFound):  # the instance exists, but not in that study or series
        arch.read_instance(a.sop_instance_uid, principal=reader(arch), study_uid=b.study_uid)
    with pytest.raises(NotFound):
        arch.read_instance(a.sop_instance_uid, principal=reader(arch), series_uid=b.series_uid)
    with pytest.raises(NotAcceptable):
        arch.read_instance(a.sop_instance_uid, principal=reader(arch), transfer_syntaxes={"1.2.840.10008.1.2.4.50"})
    assert arch.read_instance(a.sop_instance_uid, principal=reader(arch),
                              transfer_syntaxes={"1.2.840.10008.1.2.1"}) == whole


@pytest.mark.parametrize("suffix", [b"--end--\r\n" * 3, b"", b"!"])
def test_framed_read_puts_the_object_between_prefix_and_suffix(archive, suffix):
    arch, _ = archive
    a = arch.ingest(ct_bytes("1.2.3.1"), source="t")
    whole = arch.read_instance(a.sop_instance_uid, principal=reader(arch))
    sizes = []

    def frame(size: int) -> tuple[bytes, bytes]:
        sizes.append(size)
        return b"head:" + str(size).encode(), suffix

    framed = arch.read_instance(a.sop_instance_uid, principal=reader(arch), frame=frame)
    assert sizes == [len(whole)]
    assert bytes(framed) == b"head:" + str(len(whole)).encode() + whole + suffix


def test_framed_read_of_a_tampered_blob_returns_nothing(archive, archive_dir):
    arch, _ = archive
    a = arch.ingest(ct_bytes("1.2.3.1"), source="t")
    (obj,) = _blobs(archive_dir, "obj")
    raw = bytearray(obj.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    obj.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        arch.read_instance(a.sop_instance_uid, principal=reader(arch), frame=lambda n: (b"<", b">" * 20))


def test_objects_waiting_together_commit_in_one_batch_and_a_conflict_fails_only_itself(archive, archive_dir):
    arch, _ = archive
    batches: list[int] = []
    original = arch._commit_batch

    def counting(batch):  # type: ignore[no-untyped-def]
        batches.append(len(batch))
        original(batch)

    arch._commit_batch = counting  # type: ignore[method-assign]
    objects = [ct_bytes(f"1.2.4.{i}", series=f"1.2.4.9.{i % 2}") for i in range(5)]
    objects.append(ct_bytes("1.2.4.0", series="1.2.4.9.0", pixel=99))  # same UID, other content
    results, errors = [], []

    def send(data: bytes) -> None:
        try:
            results.append(arch.ingest(data, source="t"))
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    with arch._write_lock:  # hold the index so that every object queues behind the first
        threads = [threading.Thread(target=send, args=(d,)) for d in objects]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(arch._commit_queue) < len(objects) - 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    for t in threads:
        t.join()
    assert [type(e) for e in errors] == [Conflict]
    assert sorted(r.status for r in results) == ["stored"] * 5
    assert max(batches) >= len(objects) - 1 and sum(batches) == len(objects)
    status = arch.status()
    assert (status["series"], status["instances"]) == (2, 5)
    assert len(_blobs(archive_dir, "obj")) == 5 and len(_blobs(archive_dir, "dlt")) == 5


def test_new_study_key_created_meanwhile_by_another_process_is_adopted(archive, archive_dir, database_url):
    """Two writers create the same new study at once: the one that commits second sealed its
    blobs with a key that lost; it must seal them again under the winner's key."""
    from safepacs.archive import Archive

    arch, _ = archive
    other = Archive.open(archive_dir, database_url=database_url)
    original_put = arch._store.put_many
    interleaved: list[bool] = []

    def put_then_other_writer_commits(items):  # type: ignore[no-untyped-def]
        original_put(items)
        if not interleaved:
            interleaved.append(True)
            other.ingest(ct_bytes("1.2.5.2"), source="other")

    arch._store.put_many = put_then_other_writer_commits  # type: ignore[method-assign]
    try:
        mine = arch.ingest(ct_bytes("1.2.5.1"), source="t")
        assert interleaved == [True]
        theirs_uid = other.instances(study_uid=mine.study_uid, principal=reader(other))
    finally:
        other.close()
    assert len(theirs_uid) == 2
    for ref in theirs_uid:
        assert arch.read_instance(ref.sop_uid, principal=reader(arch))
    assert len(_blobs(archive_dir, "obj")) == 2  # the blobs sealed under the losing key are gone
    again = Archive.open(archive_dir, database_url=database_url)
    try:
        assert again.read_instance(mine.sop_instance_uid, principal=reader(again))
    finally:
        again.close()


def test_objects_without_a_patient_id_are_filed_per_study_and_can_be_cared_for(archive):
    """Without a PatientID, unrelated people's studies once shared one empty "patient" that
    no clinician could be given care for; each study now has its own pseudonym, and the
    identified view still shows the ID as it was (empty)."""
    from tests.people import clinician, patients

    arch, _ = archive
    one = arch.ingest(ct_bytes("1.2.826.0.1.3680043.99.5.1.1", study="1.2.826.0.1.3680043.99.5",
                               series="1.2.826.0.1.3680043.99.5.1", patient_id=""), source="t")
    same = arch.ingest(ct_bytes("1.2.826.0.1.3680043.99.5.1.2", study="1.2.826.0.1.3680043.99.5",
                                series="1.2.826.0.1.3680043.99.5.1", patient_id="", pixel=8), source="t")
    other = arch.ingest(ct_bytes("1.2.826.0.1.3680043.99.6.1.1", study="1.2.826.0.1.3680043.99.6",
                                 series="1.2.826.0.1.3680043.99.6.1", patient_id=""), source="t")
    stored = {s: pydicom.dcmread(io.BytesIO(arch.read_instance(s.sop_instance_uid, principal=reader(arch))))
              for s in (one, same, other)}
    ids = [str(ds.PatientID) for ds in stored.values()]
    assert all(i.startswith("SP") and len(i) == 18 for i in ids)
    assert ids[0] == ids[1] != ids[2]  # one per study
    assert "" not in patients(arch) and set(ids) <= set(patients(arch))
    doc, _ = clinician(arch, "doc-noid", for_patients=[ids[0]])  # care can be granted
    identified = pydicom.dcmread(io.BytesIO(arch.read_instance(one.sop_instance_uid, principal=doc)))
    assert str(identified.PatientID) == ""  # as it was


def test_a_streamed_read_is_the_object_and_checks_each_segment_before_it_yields_it(archive, archive_dir):
    """A large object (three sealed segments) read as a stream: the same bytes as a whole
    read, framed alike; a segment damaged after the first is found when the stream reaches
    it, after only authentic bytes came out; one damaged in the first is found before
    anything is returned."""
    arch, _ = archive
    stored = arch.ingest(ct_bytes(side=1200), source="t")  # 2.9 MB
    who = reader(arch)
    whole = arch.read_instance(stored.sop_instance_uid, principal=who)
    assert len(whole) > 2 << 20

    def frame(size: int) -> tuple[bytes, bytes]:
        return b"<%d>" % size, b"</>"

    streamed = arch.read_instance(stored.sop_instance_uid, principal=who, frame=frame, stream=True)
    chunks = [bytes(c) for c in streamed.chunks]
    assert len(chunks) > 3  # sent as it is opened, not as one buffer
    assert b"".join(chunks) == b"<%d>" % len(whole) + whole + b"</>"
    assert streamed.size == len(b"".join(chunks))

    (blob,) = _blobs(archive_dir, "obj")
    raw = bytearray(blob.read_bytes())
    damaged = bytearray(raw)
    damaged[segment_start(2) + 100] ^= 0x01
    blob.write_bytes(bytes(damaged))
    late = arch.read_instance(stored.sop_instance_uid, principal=who, stream=True)
    got = b""
    with pytest.raises(IntegrityError):
        for chunk in late.chunks:
            got += bytes(chunk)
    assert got == whole[: len(got)] and len(got) == 2 << 20  # the two good segments, nothing else

    damaged = bytearray(raw)
    damaged[segment_start(0) + 100] ^= 0x01
    blob.write_bytes(bytes(damaged))
    with pytest.raises(IntegrityError):
        arch.read_instance(stored.sop_instance_uid, principal=who, stream=True)
