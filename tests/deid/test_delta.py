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
    direct = [(path, tag) for (path, tag), e in delta.entries.items() if _raw_bytes(e.original) is not None]
    # the removed elements are copied byte for byte; read implicitly, standard elements
    # qualify with the dictionary's VR, private ones (VR by creator) do not
    assert len([path for path, _ in direct if not path or path[0] != META]) > 5
    assert not implicit or not any(tag & 0x10000 for _, tag in direct)
    restored = IdentityDelta.from_bytes(delta.to_bytes()).apply(out)
    assert _same(reference, restored) == []
    assert str(restored.PatientName) == str(reference.PatientName)


def test_direct_copy_refuses_what_it_cannot_copy_faithfully():
    from pydicom.dataelem import RawDataElement

    from safepacs.deid.delta import _raw_bytes

    def raw(vr, value, length=None, implicit=False, little=True, tag=0x00100010):
        return RawDataElement(tag, vr, len(value) if length is None else length, value, 0, implicit, little)

    assert _raw_bytes(raw("PN", b"DOE^JO")) == b"\x10\x00\x10\x00PN\x06\x00DOE^JO"
    assert _raw_bytes(raw("OB", b"\x01\x02")) == b"\x10\x00\x10\x00OB\x00\x00\x02\x00\x00\x00\x01\x02"
    # an odd length (real files have them) as read: pydicom's writer would pad it
    assert _raw_bytes(raw("PN", b"DOE")) == b"\x10\x00\x10\x00PN\x03\x00DOE"
    # read implicitly: a standard element takes the dictionary's VR, a private one cannot
    assert _raw_bytes(raw(None, b"DOE^JO", implicit=True)) == b"\x10\x00\x10\x00PN\x06\x00DOE^JO"
    assert _raw_bytes(raw(None, b"DOE^JO", implicit=True, tag=0x00091001)) is None
    assert _raw_bytes(raw(None, b"\x01\x00", implicit=True, tag=0x00280106)) is None  # US or SS
    # UN as written (explicit VR): kept as UN, whatever VR pydicom would give it on reading
    assert _raw_bytes(raw("UN", b"DOE^JO")) == b"\x10\x00\x10\x00UN\x00\x00\x06\x00\x00\x00DOE^JO"
    assert _raw_bytes(raw("US or SS", b"\x01\x00")) is None
    assert _raw_bytes(raw("PN", b"DOE^JO", little=False)) is None
    assert _raw_bytes(raw("SQ", b"")) is None
    assert _raw_bytes(raw("PN", b"DOE^JO", length=0xFFFFFFFF)) is None


@pytest.mark.parametrize("implicit", [False, True])
def test_text_padding_comes_back_byte_for_byte(keys, implicit, tmp_path):
    """Devices pad text with runs of spaces (an ALOKA scanner's InstitutionName ends in ten);
    pydicom strips them when it converts a value, so restore puts the recorded bytes back."""
    import io

    import pydicom

    ds = _reread(make_ct(), implicit)
    ds.InstitutionName = "NO INFO"
    ds.StudyDescription = "CHEST"
    fp = io.BytesIO()
    ds.save_as(fp, enforce_file_format=True)
    padded = fp.getvalue().replace(b"NO INFO ", b"NO INFO" + b" " * 11).replace(b"CHEST ", b"CHEST" + b" " * 7)
    padded = padded.replace(b"\x08\x00\x80\x00LO\x08\x00", b"\x08\x00\x80\x00LO\x12\x00")
    padded = padded.replace(b"\x08\x00\x80\x00\x08\x00\x00\x00", b"\x08\x00\x80\x00\x12\x00\x00\x00")
    padded = padded.replace(b"\x08\x00\x30\x10LO\x06\x00", b"\x08\x00\x30\x10LO\x0c\x00")
    padded = padded.replace(b"\x08\x00\x30\x10\x06\x00\x00\x00", b"\x08\x00\x30\x10\x0c\x00\x00\x00")
    original = pydicom.dcmread(io.BytesIO(padded))
    assert original.get_item(0x00080080).value == b"NO INFO" + b" " * 11  # the file reads back padded
    out, delta = deidentify(original, Options(), keys)
    restored = IdentityDelta.from_bytes(delta.to_bytes()).apply(out)
    again = io.BytesIO()
    restored.save_as(again)
    assert again.getvalue()[128:] == padded[128:]


def test_a_large_kept_pixel_group_is_serialised_in_pieces_to_the_same_text(keys):
    """A cine's kept original (here 7 MB, over the streaming size and not a whole number
    of pieces) is base64-encoded and compressed a piece at a time: the delta holds exactly
    the JSON text of the one-piece way, and opens to the same bytes."""
    import base64
    import json
    import os
    import zlib

    from safepacs.deid import delta as module
    from safepacs.deid.delta import PixelDelta

    _ds, delta = deidentify(make_ct(), Options(), keys)
    group = os.urandom(module._CHUNK * 2 + 12345)
    delta.pixels = PixelDelta(group=group)
    plain = delta.to_bytes()
    doc = json.loads(zlib.decompress(plain))
    assert doc["px"]["g"] == base64.b64encode(group).decode("ascii")
    assert IdentityDelta.from_bytes(plain).pixels.group == group
    delta.pixels = PixelDelta(group=group[: module._STREAMED - 1])  # under the size: one piece
    assert json.loads(zlib.decompress(delta.to_bytes()))["px"]["g"] == base64.b64encode(
        group[: module._STREAMED - 1]).decode("ascii")
    sealed = delta.seal(keys.derive(DELTA_KEY_PURPOSE), "2.25.1")
    assert unseal(sealed, keys.derive(DELTA_KEY_PURPOSE), "2.25.1").pixels.group == group[: module._STREAMED - 1]
