"""A damaged blob is never served: WADO-RS answers 500 with a JSON error, not wrong bytes."""

from __future__ import annotations

import pydicom

from tests.api.test_dicomweb import client


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
