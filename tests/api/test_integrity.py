"""A damaged blob is never served: WADO-RS answers 500 with a JSON error, not wrong bytes.
A large object is sent as its sealed segments are opened, each checked before it goes out:
damage found part-way cuts the response short of its length, and the trail says why."""

from __future__ import annotations

import io
import json

import httpx
import pydicom
import pytest
from sqlalchemy import select

from safepacs.audit.models import AuditEntry
from tests.api.conftest import serve
from tests.api.test_dicomweb import client
from tests.archive.objects import ct_bytes, segment_start


def test_flipped_byte_in_a_stored_blob_fails_retrieval_with_an_error(served, small_corpus):
    stored = client(served).store_instances([pydicom.dcmread(small_corpus[0])])
    url = str(stored.ReferencedSOPSequence[0].RetrieveURL)
    blobs = sorted(p for p in (served.data_dir / "blobs").rglob("*") if p.is_file())
    assert blobs
    for blob in blobs:  # every blob of this one-instance archive: object and delta
        raw = bytearray(blob.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        blob.write_bytes(bytes(raw))
    with served.client() as h:
        r = h.get(url)
        meta = h.get(url + "/metadata")
    assert r.status_code == 500 and "integrity" in r.json()["error"]
    assert meta.status_code == 500
    assert b"DICM" not in r.content


def _events(archive, request_id: str) -> list[dict]:
    archive.audit.flush()
    with archive.access.ctx.engine.connect() as conn:
        entries = [json.loads(bytes(e)) for e in conn.scalars(select(AuditEntry.entry))]
    return [e for e in entries if e.get("request_id") == request_id]


@pytest.fixture
def alone(tmp_path):
    """An archive of its own: the only large object blob in it is the test's."""
    served = serve(tmp_path / "archive")
    yield next(served)
    served.close()


@pytest.mark.parametrize("segment", [0, 2])
def test_a_large_object_damaged_part_way_is_never_served_whole(alone, segment):
    ds = pydicom.dcmread(io.BytesIO(ct_bytes(side=1200)))  # 2.9 MB: three sealed segments
    stored = client(alone).store_instances([ds])
    url = str(stored.ReferencedSOPSequence[0].RetrieveURL)
    with alone.client() as h:
        good = h.get(url)
    assert good.status_code == 200 and len(good.content) > 2 << 20
    assert int(good.headers["content-length"]) == len(good.content)
    (blob,) = [p for p in (alone.data_dir / "blobs").rglob("*.obj") if p.stat().st_size > 2 << 20]
    raw = bytearray(blob.read_bytes())
    raw[segment_start(segment) + 50] ^= 0x01
    blob.write_bytes(bytes(raw))
    with alone.client() as h:
        if segment == 0:  # found before the status line: an error answer
            r = h.get(url)
            assert r.status_code == 500 and "integrity" in r.json()["error"]
            request_id = r.headers["x-request-id"]
        else:  # found part-way: the body stops short of its length and the client knows
            with h.stream("GET", url) as r:
                assert r.status_code == 200
                request_id = r.headers["x-request-id"]
                got = b""
                with pytest.raises(httpx.RemoteProtocolError):
                    for piece in r.iter_bytes():
                        got += piece
            assert 0 < len(got) < int(r.headers["content-length"])
            boundary, sent = good.content[2:34], got[2:34]  # each response has its own
            assert got.replace(sent, boundary) == good.content[: len(got)]  # all authentic
    (event,) = _events(alone.archive, request_id)
    assert event["outcome"] == 8  # serious failure, though the status line said 200
    if segment:
        assert event["reason"].startswith("response cut") and event["detail"]["unfinished"] is True
