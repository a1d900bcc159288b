"""Accept negotiation of WADO-RS /frames (PS3.18 8.7.3): as stored, uncompressed, or 406."""

from __future__ import annotations

import pytest

from safepacs.api.framemedia import OCTET, FrameReply, negotiate

J2K, RLE, JPEG = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50"
EXPLICIT, IMPLICIT, BIG = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"


def mp(inner: str, ts: str | None = None) -> str:
    return f'multipart/related; type="{inner}"' + (f"; transfer-syntax={ts}" if ts else "")


@pytest.mark.parametrize("accept", [None, "", "*/*", "multipart/*", mp("*/*"), mp(OCTET, "*")])
def test_any_encoding_gets_the_frames_as_stored(accept):
    got = negotiate(accept, J2K)
    assert got is not None and not got.decode and got.transfer_syntax == J2K


def test_as_stored_compressed_frames_are_labelled_with_their_own_media_type():
    assert negotiate("*/*", J2K) == FrameReply("image/jp2", J2K, False)
    assert negotiate(mp("image/jp2"), J2K) == FrameReply("image/jp2", J2K, False)
    assert negotiate(mp("image/dicom-rle"), RLE) == FrameReply("image/dicom-rle", RLE, False)
    assert negotiate(mp("image/*"), JPEG) == FrameReply("image/jpeg", JPEG, False)
    assert negotiate(mp(OCTET, "*"), RLE) == FrameReply(OCTET, RLE, False)


@pytest.mark.parametrize("accept", [mp(OCTET), mp(OCTET, EXPLICIT), f"{OCTET}", f"{OCTET}; transfer-syntax={EXPLICIT}"])
def test_octet_stream_without_a_syntax_means_explicit_little_endian(accept):
    """dicomweb-client's default for frames: compressed frames must be decoded for it."""
    assert negotiate(accept, J2K) == FrameReply(OCTET, EXPLICIT, True)
    assert negotiate(accept, BIG) == FrameReply(OCTET, EXPLICIT, True)
    # native little endian pixel bytes are the same in either VR encoding: no decoding
    assert negotiate(accept, IMPLICIT) == FrameReply(OCTET, EXPLICIT, False)
    assert negotiate(accept, EXPLICIT) == FrameReply(OCTET, EXPLICIT, False)


def test_implicit_little_endian_may_be_asked_for_by_name():
    assert negotiate(mp(OCTET, IMPLICIT), RLE) == FrameReply(OCTET, IMPLICIT, True)


def test_as_stored_wins_over_decoding_when_both_are_accepted():
    assert negotiate(f"{mp(OCTET)}, {mp('image/jp2')}", J2K) == FrameReply("image/jp2", J2K, False)


@pytest.mark.parametrize(("accept", "stored"), [
    (mp("image/jp2"), RLE),            # no transcoding into another compression
    (mp("image/jp2"), EXPLICIT),       # nor compressing native frames
    (mp("image/jpeg", "1.2.840.10008.1.2.4.70"), JPEG),  # another JPEG process
    (mp(OCTET, J2K), RLE),
    ("application/dicom", RLE),
    ("text/html", EXPLICIT),
])
def test_nothing_acceptable_is_refused(accept, stored):
    assert negotiate(accept, stored) is None
