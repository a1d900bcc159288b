from __future__ import annotations

import pytest

from safepacs.deid.delta import DELTA_KEY_PURPOSE, IdentityDelta, unseal
from safepacs.deid.engine import deidentify
from safepacs.deid.options import Options
from safepacs.errors import DeltaError
from tests.conftest import make_ct


def _same(a, b) -> list:
    """Tags whose element differs (value or VR), recursing through sequences by equality."""
    tags = set(a.keys()) | set(b.keys())
    return sorted(t for t in tags if t not in a or t not in b or a[t] != b[t] or a[t].VR != b[t].VR)


@pytest.mark.parametrize("options", [Options(), Options(clean_descriptors=True, retain_long_modified_dates=True)])
def test_restore_reproduces_the_original_header_exactly(keys, options):
    original = make_ct()
    out, delta = deidentify(original, options, keys)
    restored = IdentityDelta.from_bytes(delta.to_bytes()).apply(out)
    assert _same(original, restored) == []
    assert _same(original.file_meta, restored.file_meta) == []
    nested = restored.RequestAttributesSequence[0].ReferencedPatientSequence[0]
    assert str(nested.PatientName) == "ZHANG^WEI=张^伟"


def test_sealed_delta_opens_only_with_its_key_and_object(keys, other_keys):
    out, delta = deidentify(make_ct(), Options(), keys)
    key = keys.derive(DELTA_KEY_PURPOSE)
    blob = delta.seal(key, out.SOPInstanceUID)
    assert b"ZHANG" not in blob and "张".encode() not in blob
    assert unseal(blob, key, out.SOPInstanceUID).apply(out).PatientID == "PID7734120"
    with pytest.raises(DeltaError, match="wrong key"):
        unseal(blob, other_keys.derive(DELTA_KEY_PURPOSE), out.SOPInstanceUID)
    with pytest.raises(DeltaError, match="another object"):
        unseal(blob, key, "2.25.1")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DeltaError):
        unseal(tampered, key, out.SOPInstanceUID)


def test_two_seals_of_one_delta_never_share_a_nonce(keys):
    out, delta = deidentify(make_ct(), Options(), keys)
    key = keys.derive(DELTA_KEY_PURPOSE)
    assert delta.seal(key, out.SOPInstanceUID)[8:20] != delta.seal(key, out.SOPInstanceUID)[8:20]


def test_pixel_section_survives_sealing(keys):
    from safepacs.deid.delta import PixelDelta

    ds = make_ct()
    out, delta = deidentify(ds, Options(), keys)
    delta.pixels = PixelDelta("<u2", [(0, 3, 4, 5, 2, bytes(range(20))), (1, 0, 0, 1, 1, b"\x01\x02")])
    key = keys.derive(DELTA_KEY_PURPOSE)
    loaded = unseal(delta.seal(key, out.SOPInstanceUID), key, out.SOPInstanceUID)
    assert loaded.pixels == delta.pixels
    assert loaded.apply(out) == ds
    delta.pixels = PixelDelta(group=b"\xe0\x7f\x10\x00OB\x00\x00" + bytes(300))
    loaded = unseal(delta.seal(key, out.SOPInstanceUID), key, out.SOPInstanceUID)
    assert loaded.pixels.group == delta.pixels.group and loaded.pixels.patches == []


def test_version_1_deltas_are_still_read(keys):
    import json
    import zlib

    ds = make_ct()
    out, delta = deidentify(ds, Options(), keys)
    doc = json.loads(zlib.decompress(delta.to_bytes()))
    assert doc["v"] == 2 and "px" not in doc
    doc["v"] = 1
    loaded = IdentityDelta.from_bytes(zlib.compress(json.dumps(doc).encode()))
    assert loaded.pixels is None
    assert loaded.apply(out) == ds
    doc["v"] = 3
    with pytest.raises(DeltaError, match="version"):
        IdentityDelta.from_bytes(zlib.compress(json.dumps(doc).encode()))
