"""multipart/related framing: round trip, chunked feeding, and every way a body can be wrong."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safepacs.api import multipart
from safepacs.api.multipart import MultipartError

B = "b0undary-42"


def body(*contents: bytes, boundary: str = B, content_type: str = "application/dicom") -> bytes:
    return b"".join(multipart.encode(iter([(content_type, c) for c in contents]), boundary))


def test_round_trip_keeps_bytes_exactly_including_crlf_and_dashes():
    parts = [b"DICM\r\n--b0undary-4", b"", b"\r\n\r\n--", bytes(range(256)) * 100]
    got = multipart.parse(body(*parts), B, max_part_bytes=1 << 20)
    assert [p.content for p in got] == parts
    assert all(p.content_type == "application/dicom" for p in got)
    assert got[0].headers["content-length"] == str(len(parts[0]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4), st.integers(1, 50))
def test_any_chunking_gives_the_same_parts(contents, chunk):
    raw = body(*contents)
    p = multipart.Parser(B, max_part_bytes=1 << 20)
    got = []
    for i in range(0, len(raw), chunk):
        got += p.feed(raw[i : i + chunk])
    p.close()
    assert [g.content for g in got] == contents


def test_preamble_and_epilogue_are_ignored():
    raw = b"preamble text\r\n" + body(b"abc") + b"epilogue"
    assert [p.content for p in multipart.parse(raw, B, max_part_bytes=100)] == [b"abc"]


@pytest.mark.parametrize("cut", [10, 60, -10, -3])
def test_truncated_body_is_an_error(cut):
    raw = body(b"x" * 40, b"y" * 40)
    with pytest.raises(MultipartError, match="truncated|boundary") as e:
        multipart.parse(raw[:cut], B, max_part_bytes=1000)
    assert e.value.status == 400


def test_body_without_the_boundary_is_an_error():
    with pytest.raises(MultipartError):
        multipart.parse(b"no delimiters here at all", B, max_part_bytes=1000)


def test_part_larger_than_allowed_is_413():
    with pytest.raises(MultipartError) as e:
        multipart.parse(body(b"z" * 2000), B, max_part_bytes=1000)
    assert e.value.status == 413


def test_huge_declared_length_is_refused_before_reading_the_part():
    raw = (f"--{B}\r\nContent-Type: application/dicom\r\nContent-Length: 99999999999\r\n\r\n").encode()
    p = multipart.Parser(B, max_part_bytes=1000)
    with pytest.raises(MultipartError) as e:
        p.feed(raw)
    assert e.value.status == 413


def test_declared_length_that_differs_from_the_content_is_an_error():
    raw = (f"--{B}\r\nContent-Type: application/dicom\r\nContent-Length: 5\r\n\r\nabc\r\n--{B}--\r\n").encode()
    with pytest.raises(MultipartError, match="length"):
        multipart.parse(raw, B, max_part_bytes=1000)


def test_malformed_part_header_is_an_error():
    raw = (f"--{B}\r\nthis is not a header\r\n\r\nabc\r\n--{B}--\r\n").encode()
    with pytest.raises(MultipartError, match="header"):
        multipart.parse(raw, B, max_part_bytes=1000)


def test_body_with_no_part_is_an_error():
    with pytest.raises(MultipartError, match="without any part"):
        multipart.parse(f"--{B}--\r\n".encode(), B, max_part_bytes=1000)


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (None, 415),
        ("application/dicom", 415),
        ("multipart/form-data; boundary=x", 415),
        ("multipart/related; type=\"application/dicom\"", 400),
        ("multipart/related; boundary=\"\"", 400),
        ("multipart/related; boundary=" + "x" * 71, 400),
    ],
)
def test_request_content_type_checks(value, status):
    with pytest.raises(MultipartError) as e:
        multipart.boundary_of(value)
    assert e.value.status == status


def test_quoted_boundary_and_type_parameter_are_read():
    b, params = multipart.boundary_of('Multipart/Related; type="application/dicom"; boundary="a b:c"')
    assert b == "a b:c"
    assert params["type"] == "application/dicom"
