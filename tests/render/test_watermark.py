"""The forensic watermark: survives what leaked images go through, changes the image by
a clinically negligible amount, and never names a copy it was not given."""

from __future__ import annotations

import numpy as np
import pytest

from safepacs.render.display import mark_display
from safepacs.render.watermark import SERIAL_BITS, detect, embed, payload_bits, psnr
from safepacs.synth.pixels import radiograph
from tests.render.attacks import ATTACKS, full8

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
TRIALS = 20  # per attack in CI; benchmarks/render.py runs 100 on 2048x2048
SIZE = 1024


def _image(seed: int) -> tuple[np.ndarray, int]:
    bits = (12, 14, 16)[seed % 3]
    return radiograph(np.random.default_rng(seed), SIZE, SIZE, bits, bool(seed % 2)), bits


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_mark_survives_attack_in_at_least_95_percent_and_never_names_another(attack):
    rng = np.random.default_rng(sum(attack.encode()))
    found = wrong = 0
    for trial in range(TRIALS):
        image, bits = _image(trial)
        serial = int(rng.integers(1, 1 << SERIAL_BITS))
        marked = embed(image, serial, KEY, bounds=(0, (1 << bits) - 1))
        result = detect(ATTACKS[attack](marked, rng), KEY)
        if result is not None and result.serial == serial:
            found += 1
        elif result is not None:
            wrong += 1
    assert wrong == 0
    assert found >= 0.95 * TRIALS


def test_psnr_on_16_bit_data_is_at_least_45_db():
    for seed in range(6):
        image, bits = _image(seed)
        marked = embed(image, 12345, KEY, bounds=(0, (1 << bits) - 1))
        assert np.any(marked != image)
        # against the image's own dynamic range (stricter than against 2^bits - 1)
        assert psnr(image, marked, float(image.max() - image.min())) >= 45.0
        assert psnr(image, marked, float((1 << bits) - 1)) >= 45.0
        assert marked.dtype == image.dtype and marked.max() < 1 << bits


def test_unmarked_images_and_other_keys_name_nobody():
    rng = np.random.default_rng(7)
    for seed in range(8):
        image, bits = _image(100 + seed)
        assert detect(full8(image), KEY) is None
        marked = embed(image, int(rng.integers(1, 1 << 31)), OTHER_KEY, bounds=(0, (1 << bits) - 1))
        assert detect(full8(marked), KEY) is None
        assert detect(rng.integers(0, 256, (600, 700), dtype=np.uint8), KEY) is None


def test_check_bits_are_keyed():
    assert not np.array_equal(payload_bits(KEY, 99), payload_bits(OTHER_KEY, 99))
    assert np.array_equal(payload_bits(KEY, 99)[:SERIAL_BITS], payload_bits(OTHER_KEY, 99)[:SERIAL_BITS])
    with pytest.raises(ValueError):
        payload_bits(KEY, 1 << SERIAL_BITS)


def test_inverted_display_and_colour_still_decode():
    image, bits = _image(3)
    marked = embed(image, 4242, KEY, bounds=(0, (1 << bits) - 1))
    assert detect(255 - full8(marked), KEY).serial == 4242
    rgb = np.repeat(full8(image)[..., None], 3, axis=2)
    marked_rgb = mark_display(rgb, 777, KEY)
    assert marked_rgb.shape == rgb.shape and detect(marked_rgb, KEY).serial == 777


def test_multi_frame_and_signed_data_are_marked_within_bounds():
    base = radiograph(np.random.default_rng(5), 800, 800, 12, False).astype(np.int16) - 2048
    frames = np.stack([base, base[::-1], base[:, ::-1]])[..., None]
    marked = embed(frames, 9, KEY, bounds=(-2048, 2047))
    assert marked.shape == frames.shape and marked.min() >= -2048 and marked.max() <= 2047
    assert detect(marked[1, ..., 0], KEY).serial == 9
