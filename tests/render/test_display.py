"""Rendered JPEGs: a large grey image is coded as two strips joined into one standard
JPEG, which must decode to exactly what one whole-image encode decodes to."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from safepacs.render import display
from safepacs.render.watermark import detect


def _radiograph(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    body = 120 + 80 * np.sin(x / 90.0) * np.cos(y / 70.0)
    return np.clip(body + rng.normal(0, 12, (rows, cols)), 0, 255).astype(np.uint8)


def _pillow(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image, "L").save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


@pytest.mark.parametrize("shape", [(2048, 2048), (3000, 2500), (577, 1001), (1030, 777), (511, 300), (64, 40)])
@pytest.mark.parametrize("quality", [90, 75])
def test_the_joined_jpeg_decodes_like_one_encode_in_two_decoders(shape, quality):
    image = _radiograph(*shape)
    data = display.encode_jpeg(image, quality)
    by_pillow = np.asarray(Image.open(io.BytesIO(data)))
    by_opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    reference = _pillow(image, quality)
    assert by_pillow.shape == shape and np.array_equal(by_pillow, reference)
    assert np.array_equal(by_opencv, reference)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG" and img.size == (shape[1], shape[0])


def test_strips_are_joined_only_when_their_headers_agree():
    image = _radiograph(1024, 512)
    top = display._grey_jpeg(image[:512], 90, restart=True)
    bottom = display._grey_jpeg(image[512:], 90, restart=True)
    joined = display.join_strips(top, bottom, 1024)
    assert joined is not None and joined.count(b"\xff\xd7") >= 1
    assert display.join_strips(top, display._grey_jpeg(image[512:], 50, restart=True), 1024) is None  # tables
    assert display.join_strips(top, display._grey_jpeg(image[512:], 90), 1024) is None  # no restart markers
    assert display.join_strips(top[:-2], bottom, 1024) is None  # truncated
    assert display.join_strips(b"not a jpeg", bottom, 1024) is None


def test_a_marked_image_survives_the_strip_join_and_its_reader_is_found():
    key = b"k" * 32
    image = _radiograph(2048, 2048, seed=3)
    data = display.encode_jpeg(display.mark_display(image, 31337, key), 90)
    found = detect(np.asarray(Image.open(io.BytesIO(data))), key)
    assert found is not None and found.serial == 31337


def test_colour_images_are_still_coded_whole():
    rgb = np.dstack([_radiograph(600, 400, s) for s in range(3)])
    data = display.encode(rgb, "jpeg", 90)
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "RGB" and img.size == (400, 600)


@pytest.mark.parametrize("shape", [(2048, 2048), (1000, 700)])
def test_marking_each_strip_on_its_thread_equals_marking_the_whole_image(shape):
    key = b"q" * 32
    image = _radiograph(*shape, seed=5)
    by_strip = display.encode(image, "jpeg", 90, prepare=display.marker(77, key))
    whole = display.encode(display.mark_display(image, 77, key), "jpeg", 90)
    decoded = [np.asarray(Image.open(io.BytesIO(d))) for d in (by_strip, whole)]
    assert np.array_equal(decoded[0], decoded[1])
    assert not np.array_equal(decoded[0], _pillow(image, 90))  # the mark is there
