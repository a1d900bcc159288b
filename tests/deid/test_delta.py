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


def _reread(ds, implicit: bool = False):
    """``ds`` through a Part 10 file and back, so its elements are raw as an ingest sees them."""
    import io

    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    fp = io.BytesIO()
    ds.save_as(fp, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(fp.getvalue()))


@pytest.mark.parametrize("implicit", [False, True])
def test_elements_read_from_a_file_are_recorded_from_their_own_bytes_and_restored_exactly(keys, implicit):
    from safepacs.deid.delta import META, _raw_bytes

    original = _reread(make_ct(), implicit)
    reference = _reread(make_ct(), implicit)
    out, delta = deidentify(original, Options(), keys)
    direct = [path for (path, _), e in delta.entries.items() if _raw_bytes(e.original) is not None]
    # explicit VR: the removed elements are copied byte for byte; implicit: only the (always
    # explicit) file meta elements qualify
    assert len(direct) > 5 if not implicit else all(path and path[0] == META for path in direct)
    restored = IdentityDelta.from_bytes(delta.to_bytes()).apply(out)
    assert _same(reference, restored) == []
    assert str(restored.PatientName) == str(reference.PatientName)


def test_direct_copy_refuses_what_it_cannot_copy_faithfully():
    from pydicom.dataelem import RawDataElement

    from safepacs.deid.delta import _raw_bytes

    def raw(vr, value, length=None, implicit=False, little=True):
        return RawDataElement(0x00100010, vr, len(value) if length is None else length, value, 0, implicit, little)

    assert _raw_bytes(raw("PN", b"DOE^JO")) == b"\x10\x00\x10\x00PN\x06\x00DOE^JO"
    assert _raw_bytes(raw("OB", b"\x01\x02")) == b"\x10\x00\x10\x00OB\x00\x00\x02\x00\x00\x00\x01\x02"
    assert _raw_bytes(raw("PN", b"DOE")) is None  # odd length
    assert _raw_bytes(raw(None, b"DOE^JO", implicit=True)) is None
    assert _raw_bytes(raw("UN", b"DOE^JO")) is None  # pydicom may know its real VR
    assert _raw_bytes(raw("US or SS", b"\x01\x00")) is None
    assert _raw_bytes(raw("PN", b"DOE^JO", little=False)) is None
    assert _raw_bytes(raw("SQ", b"")) is None
    assert _raw_bytes(raw("PN", b"DOE^JO", length=0xFFFFFFFF)) is None
