"""Decoding stored values and the 8-bit display frame for every supported pixel format."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    JPEG2000,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    RLELossless,
)

from safepacs.deid.pixels.frames import PixelError, darkest_value, display_frame, stored_frames
from safepacs.synth.burned import chest_xray, ct_slice, ultrasound
from tests.conftest import TCIA, needs_tcia
from tests.deid.pixels.conftest import image, ramp


@pytest.mark.parametrize(
    ("dtype", "low", "high", "stored_bits"),
    [(np.uint8, 0, 255, 8), (np.uint16, 0, 4095, 12), (np.int16, -1024, 3071, 12),
     (np.uint16, 0, 65535, 16), (np.int16, -32768, 32767, 16)],
)
def test_greyscale_native_values_are_read_exactly(dtype, low, high, stored_bits):
    values = ramp(2, 8, 64, dtype, low, high)
    ds = image(values, "MONOCHROME2", bits_stored=stored_bits)
    stored = stored_frames(ds)
    assert stored.array.shape == (2, 8, 64, 1)
    assert np.array_equal(stored.array[..., 0], values)
    assert stored.buffer is not None  # native: redaction writes straight into the bytes


def test_big_endian_values_are_read_exactly():
    values = ramp(1, 4, 32, np.uint16, 0, 4095)
    ds = image(values, "MONOCHROME2", bits_stored=12)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = values.astype(">u2").tobytes()
    assert np.array_equal(stored_frames(ds).array[..., 0], values)


def test_monochrome2_display_runs_black_to_white_and_monochrome1_is_inverted():
    values = ramp(1, 4, 256, np.uint16, 0, 4095)
    mono2 = display_frame(stored_frames(image(values, "MONOCHROME2", bits_stored=12)), 0,
                          image(values, "MONOCHROME2", bits_stored=12))
    ds1 = image(values, "MONOCHROME1", bits_stored=12)
    mono1 = display_frame(stored_frames(ds1), 0, ds1)
    assert mono2.dtype == np.uint8 and mono2.shape == (4, 256)
    assert mono2[0, 0] == 0 and mono2[0, -1] == 255
    assert np.all(np.diff(mono2[0].astype(int)) >= 0)
    assert np.array_equal(mono1, 255 - mono2)


def test_signed_ct_is_windowed_with_rescale_and_window():
    hu = ramp(1, 2, 200, np.int16, -1000, 1000)
    ds = image(hu, "MONOCHROME2", bits_stored=12)
    ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
    ds.WindowCenter, ds.WindowWidth = "0", "200"
    shown = display_frame(stored_frames(ds), 0, ds)[0]
    assert shown[hu[0, 0] < -100].max() == 0  # below the window: black
    assert shown[hu[0, 0] > 100].min() == 255  # above: white
    inside = (hu[0, 0] > -90) & (hu[0, 0] < 90)
    assert 0 < shown[inside].min() < shown[inside].max() < 255


def test_garbage_above_bits_stored_is_ignored():
    values = ramp(1, 2, 64, np.uint16, 0, 4095)
    clean = image(values, "MONOCHROME2", bits_stored=12)
    dirty = image(values | np.uint16(0xF000), "MONOCHROME2", bits_stored=12)
    assert np.array_equal(display_frame(stored_frames(dirty), 0, dirty),
                          display_frame(stored_frames(clean), 0, clean))


@pytest.mark.parametrize("planar", [0, 1])
def test_rgb_is_read_per_sample_and_shown_as_luminance(planar):
    rng = np.random.default_rng(1)
    rgb = rng.integers(128, 256, (2, 6, 10, 3), dtype=np.uint8)  # a light frame
    ds = image(rgb, "RGB", planar=planar)
    stored = stored_frames(ds)
    assert np.array_equal(stored.array, rgb)
    grey = display_frame(stored, 1, ds)
    expected = rgb[1].astype(float) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(grey.astype(float) - expected).max() <= 2
    assert list(darkest_value(stored, 0, ds)) == [0, 0, 0]


def test_a_dark_rgb_frame_is_shown_by_its_brightest_channel():
    rgb = np.zeros((1, 6, 10, 3), dtype=np.uint8)
    rgb[0, 2, :, 0] = 220  # a red stroke on black: luma 66
    rgb[0, 3, :, 2] = 255  # a blue one: luma 29
    rgb[0, 4, :] = 90  # grey keeps its value
    ds = image(rgb, "RGB")
    grey = display_frame(stored_frames(ds), 0, ds)
    assert list(grey[2:5, 0]) == [220, 255, 90]


def test_ybr_full_shows_its_luma_and_fills_with_black():
    ybr = np.zeros((1, 4, 8, 3), dtype=np.uint8)
    ybr[..., 0] = np.arange(8) * 30
    ybr[..., 1:] = 128
    ds = image(ybr, "YBR_FULL")
    stored = stored_frames(ds)
    assert np.array_equal(display_frame(stored, 0, ds)[0], np.arange(8) * 30)
    assert list(darkest_value(stored, 0, ds)) == [0, 128, 128]


def test_a_dark_palette_colour_frame_is_shown_by_the_brightest_channel_of_its_entries():
    ds = pydicom.dcmread(get_testdata_file("OBXXXX1A.dcm"))
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    stored = stored_frames(ds)
    shown = display_frame(stored, 0, ds)
    from pydicom.pixels import apply_color_lut

    colour = apply_color_lut(stored.array[0, ..., 0], ds).astype(float)
    expected = colour.max(axis=-1) / colour.max() * 255  # a dark frame (median near black)
    assert np.abs(shown.astype(float) - expected).max() <= 1.5
    fill = darkest_value(stored, 0, ds)
    assert shown[stored.array[0, ..., 0] == fill[0]].max() == shown.min()


@pytest.mark.parametrize(
    "name",
    ["MR_small_RLE.dcm", "SC_rgb_rle_2frame.dcm", "JPGExtended.dcm", "JPEG-LL.dcm",
     "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_jpeg_lossy_gdcm.dcm", "color3d_jpeg_baseline.dcm",
     "MR_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_2k_lossless.dcm", "MR2_J2KI.dcm",
     "RG1_J2KR.dcm", "SC_rgb_jpeg_gdcm.dcm"],
)
def test_compressed_transfer_syntaxes_decode_like_pydicom(name):
    ds = pydicom.dcmread(get_testdata_file(name))
    stored = stored_frames(ds)
    assert stored.buffer is None  # decoded: written back by re-encoding
    expected = ds.pixel_array.reshape(stored.array.shape)
    if ds.file_meta.TransferSyntaxUID in (JPEGBaseline8Bit, JPEGExtended12Bit, JPEG2000, JPEGLSNearLossless):
        # pydicom may pick GDCM first, safepacs never does when pylibjpeg can (see frames):
        # two IDCTs and chroma upsamplings of lossy data may differ by a few units
        assert np.abs(stored.array.astype(int) - expected.astype(int)).max() <= 8
    else:
        assert np.array_equal(stored.array, expected)
    frame = display_frame(stored, 0, ds)
    assert frame.dtype == np.uint8 and frame.shape == (int(ds.Rows), int(ds.Columns))
    if ds.SamplesPerPixel == 3:
        assert stored.photometric == "RGB"  # YBR is decoded to RGB and written back as RGB


def test_multiframe_frames_are_kept_apart():
    values = ramp(5, 4, 16, np.uint16, 0, 1000)
    values[3, 0, 0] = 1000
    ds = image(values, "MONOCHROME2")
    stored = stored_frames(ds)
    assert stored.array.shape == (5, 4, 16, 1)
    assert np.array_equal(stored.array[3, ..., 0], values[3])


def test_display_matches_the_synthetic_viewer_frame():
    """The synth module draws each image as a viewer shows it; our conversion agrees."""
    for burned in (chest_xray(7, rows=512, cols=512), ct_slice(8, size=256), ultrasound(9)):
        ds = burned.dataset
        shown = display_frame(stored_frames(ds), 0, ds).astype(int)
        assert np.abs(shown - burned.frame.astype(int)).mean() < 3


def test_short_pixel_data_is_a_clear_error():
    ds = image(ramp(1, 8, 8, np.uint16, 0, 100), "MONOCHROME2")
    ds.PixelData = ds.PixelData[:50]
    with pytest.raises(PixelError, match="shorter"):
        stored_frames(ds)


def test_corrupt_compressed_data_is_a_clear_error():
    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    ds.PixelData = ds.PixelData[:200] + b"\x00" * 10
    with pytest.raises(PixelError, match="cannot be decoded"):
        stored_frames(ds)


def test_unknown_transfer_syntax_is_a_clear_error():
    ds = image(ramp(1, 8, 8, np.uint16, 0, 100), "MONOCHROME2")
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5"
    with pytest.raises(PixelError, match="transfer syntax"):
        stored_frames(ds)


def test_mpeg_video_has_no_decoder_and_is_refused():
    ds = image(ramp(1, 8, 8, np.uint8, 0, 100), "YBR_PARTIAL_420")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 Main Profile
    with pytest.raises(PixelError, match="cannot be decoded"):
        stored_frames(ds)


@pytest.mark.parametrize(("bits", "keyword", "dtype"),
                         [(32, "FloatPixelData", np.float32), (64, "DoubleFloatPixelData", np.float64)])
def test_a_parametric_map_is_refused_with_one_reason(bits, keyword, dtype):
    """Float and double float values (Parametric Maps) are refused alike, by what they are:
    not one by its BitsAllocated and the other for lacking Pixel Data."""
    ds = image(ramp(1, 4, 4, np.uint16, 0, 100), "MONOCHROME2")
    del ds.PixelData
    ds.BitsAllocated = bits
    setattr(ds, keyword, np.arange(16, dtype=dtype).tobytes())
    with pytest.raises(PixelError, match=r"^float pixel data \(a Parametric Map's values\) is not supported"):
        stored_frames(ds)


def test_an_object_without_pixels_has_nothing_to_clean():
    ds = image(ramp(1, 4, 4, np.uint16, 0, 100), "MONOCHROME2")
    del ds.PixelData
    with pytest.raises(PixelError, match="^no pixel data to clean$"):
        stored_frames(ds)


@needs_tcia
def test_tcia_rle_monochrome1_is_inverted_text_white_on_black():
    ds = pydicom.dcmread(TCIA / "0_ORIGINAL_compressed.dcm")
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    shown = display_frame(stored_frames(ds), 0, ds)
    assert shown.shape == (1760, 2140)
    # the burned-in name sits top-left, bright on the dark background outside the body
    corner = shown[10:40, 10:400]
    assert corner.max() >= 200 and np.median(shown[100:140, 10:60]) < 80


@pytest.mark.parametrize(
    ("photometric", "dtype", "low", "high", "want"),
    [("MONOCHROME2", np.uint16, 100, 4000, 100), ("MONOCHROME1", np.uint16, 100, 4000, 4000),
     ("MONOCHROME2", np.int16, -1000, 2000, -1000), ("MONOCHROME1", np.uint8, 3, 250, 250)],
)
def test_fill_is_the_value_shown_darkest(photometric, dtype, low, high, want):
    values = ramp(1, 4, 50, dtype, low, high)
    ds = image(values, photometric, bits_stored=12 if dtype != np.uint8 else 8)
    stored = stored_frames(ds)
    fill = darkest_value(stored, 0, ds)
    assert int(fill[0]) == want
    shown = display_frame(stored, 0, ds)
    assert shown[values[0] == want].max() == shown.min()


def test_fill_ignores_garbage_above_bits_stored():
    values = ramp(1, 4, 50, np.uint16, 100, 4000)
    values[0, 0, 0] |= 0xF000  # a stray high bit: value is still 100 under BitsStored 12
    ds = image(values, "MONOCHROME2", bits_stored=12)
    fill = darkest_value(stored_frames(ds), 0, ds)
    assert int(fill[0]) & 0x0FFF == 100


def test_damaged_jpeg_is_never_handed_to_gdcm(monkeypatch):
    """GDCM aborts the whole process on some damaged JPEG data (a C++ exception through its
    C API); it is tried only where no other plugin can decode the syntax."""
    from pydicom.pixels.decoders.base import Decoder

    from safepacs.deid.pixels.frames import decode

    tried: list[str] = []
    real = Decoder.as_array

    def spy(self, src, **kwargs):  # type: ignore[no-untyped-def]
        tried.append(kwargs.get("decoding_plugin", ""))
        return real(self, src, **kwargs)

    monkeypatch.setattr(Decoder, "as_array", spy)
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    assert decode(ds)[0].shape == (100, 100, 3)
    assert tried == ["pylibjpeg"]
    data = bytearray(ds.PixelData)
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # markers where entropy-coded data was
    ds.PixelData = bytes(data)
    tried.clear()
    try:
        decode(ds)  # a lenient plugin may still decode it; either way, never by GDCM
    except PixelError as exc:
        assert "cannot be decoded" in str(exc)
    assert tried and "gdcm" not in tried


def with_wrong_offset_table(ds: pydicom.Dataset) -> pydicom.Dataset:
    """``ds`` (encapsulated, a table of one offset per frame) with the table GDCM's example
    00191113.dcm has: one offset too many (the end), each off by its frame number."""
    import struct

    data = ds.PixelData
    (length,) = struct.unpack_from("<L", data, 4)
    offsets = list(struct.unpack_from(f"<{length // 4}L", data, 8))
    end = len(data) - 8 - length
    wrong = [o + k for k, o in enumerate(offsets + [end])]
    table = struct.pack(f"<{len(wrong)}L", *wrong)
    bad = pydicom.dcmread(get_testdata_file("emri_small_RLE.dcm"))
    bad.PixelData = data[:4] + struct.pack("<L", len(table)) + table + data[8 + length :]
    return bad


def test_a_basic_offset_table_that_cannot_be_right_is_ignored():
    """A real multi-frame JPEG Lossless file (GDCM's examples) has a table that does not fit
    its fragments: pydicom trusts it and cannot decode; read as DCMTK reads it, by its
    fragments, the file decodes to its frames (it was refused as undecodable)."""
    good = pydicom.dcmread(get_testdata_file("emri_small_RLE.dcm"))
    bad = with_wrong_offset_table(good)
    before = bytes(bad.PixelData)
    with pytest.raises(Exception):  # noqa: B017 - pydicom's own reading fails, whatever its error
        bad.pixel_array  # noqa: B018
    assert np.array_equal(stored_frames(bad).array, stored_frames(good).array)
    assert bad.PixelData == before  # read from a copy: the object is unchanged


def _palette(entries: list[tuple[int, int, int]], indices: np.ndarray):
    ds = image(indices.astype(np.uint8)[None], "PALETTE COLOR")
    table = np.zeros((256, 3), np.uint16)
    table[: len(entries)] = np.array(entries) * 257
    for i, c in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{c}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{c}PaletteColorLookupTableData", table[:, i].astype("<u2").tobytes())
    return ds


def test_palette_red_type_is_bright_on_black_and_dark_on_white():
    rows = np.zeros((6, 10), np.uint8)
    rows[2] = 1  # red (220, 0, 0): luma 66
    on_black = _palette([(0, 0, 0), (220, 0, 0), (255, 255, 255)], rows)
    on_white = _palette([(0, 0, 0), (220, 0, 0), (255, 255, 255)], np.where(rows == 1, 1, 2))
    black = display_frame(stored_frames(on_black), 0, on_black)
    white = display_frame(stored_frames(on_white), 0, on_white)
    assert black[2, 0] == 220 and black[0, 0] == 0
    assert white[2, 0] < 80 and white[0, 0] == 255


def _ybr_jpeg_cine(frames: int, rows: int = 240, cols: int = 320) -> pydicom.Dataset:
    """An ultrasound loop as devices write it: each frame a baseline JPEG in YBR_FULL_422."""
    import io

    from PIL import Image
    from pydicom.dataset import FileMetaDataset
    from pydicom.encaps import encapsulate

    rng = np.random.default_rng(5)
    encoded = []
    for k in range(frames):
        rgb = (rng.random((rows, cols, 3)) * 40).astype(np.uint8)
        rgb[20 + k : 120 + k, 40:200] = (200, 120, 60)  # a warm patch that moves frame to frame
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=92)
        encoded.append(buf.getvalue())
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    return ds


def test_a_colour_cine_is_decoded_frame_by_frame_like_pydicom_in_a_fraction_of_the_memory():
    """Decoded all at once, pydicom turns the whole loop's YBR into RGB in floating point
    (eight bytes per sample): a 120-frame 640x480 loop peaked at 1 GB.  One frame at a time
    the same values come out, and the decoding holds little more than its result."""
    import tracemalloc

    ds = _ybr_jpeg_cine(24)
    tracemalloc.start()
    try:
        stored = stored_frames(ds)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result = stored.array.nbytes
    assert stored.array.shape == (24, 240, 320, 3) and stored.photometric == "RGB"
    assert peak < 2 * result, (peak, result)
    for k in (0, 11, 23):
        alone = pydicom.pixels.pixel_array(ds, index=k, decoding_plugin="pylibjpeg")
        assert np.array_equal(stored.array[k], alone)
    assert not np.array_equal(stored.array[0], stored.array[23])  # frames stay apart


def test_a_cine_with_fewer_frames_than_it_declares_is_a_clear_error():
    ds = _ybr_jpeg_cine(4)
    ds.NumberOfFrames = 6
    with pytest.raises(PixelError, match="cannot be decoded"):
        stored_frames(ds)


def test_frames_decoded_one_by_one_start_again_when_a_plugin_fails_midway(monkeypatch):
    """A plugin that fails after some frames hands over to the next, from frame 0 (the
    consumer files frames by number); fewer frames than declared is refused."""
    from safepacs.deid.pixels import frames as module

    ds = pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))
    lay = module.layout(ds)

    class Flaky:
        def iter_array(self, ds, *, as_rgb, decoding_plugin):
            count = 1 if decoding_plugin == "first" else 2
            for n in range(count):
                yield np.full((lay.rows, lay.columns, 3), n + 1, np.uint8), {}
            if decoding_plugin == "first":
                raise RuntimeError("broken stream")

    monkeypatch.setattr(module, "_decoder", lambda ds, ts: (Flaky(), ds, ["first", "second"]))
    seen = [(f, int(one.array[0, 0, 0, 0])) for f, one in module.decoded_frames(ds, lay)]
    assert seen == [(0, 1), (0, 1), (1, 2)]

    class Short:
        def iter_array(self, ds, *, as_rgb, decoding_plugin):
            yield np.zeros((lay.rows, lay.columns, 3), np.uint8), {}

    monkeypatch.setattr(module, "_decoder", lambda ds, ts: (Short(), ds, ["only"]))
    with pytest.raises(module.PixelError, match="fewer frames"):
        list(module.decoded_frames(ds, lay))
