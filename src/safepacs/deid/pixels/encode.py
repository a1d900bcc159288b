"""Write cleaned pixels back: the same bytes layout when uncompressed, RLE Lossless when not.

Never a silent lossy step.  Uncompressed data keeps its transfer syntax (only the boxes'
bytes changed).  Compressed data is re-encoded with RLE Lossless, which every DICOM reader
supports and which pydicom encodes for 8-32 bit, grey and colour; a lossy original stays
marked LossyImageCompression "01" with its ratio and method history untouched, and no new
lossy step is added.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable

import numpy as np
from pydicom import Dataset
from pydicom.uid import (
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    RLELossless,
)

from safepacs.deid.pixels.frames import PixelError, Stored

#: Transfer syntaxes that are always lossy: the pixels already lost information.
LOSSY_SYNTAXES = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless})

#: Pixel-description attributes re-encoding may change; restore needs their originals.
TOUCHED_TAGS = (
    0x00280004,  # PhotometricInterpretation
    0x00280006,  # PlanarConfiguration
    0x00282110,  # LossyImageCompression
    0x7FE00001,  # ExtendedOffsetTable
    0x7FE00002,  # ExtendedOffsetTableLengths
)


def write_back(ds: Dataset, stored: Stored) -> None:
    """Put ``stored`` (already redacted) into ``ds``'s PixelData."""
    if stored.buffer is not None:
        ds.PixelData = bytes(stored.buffer)
        return
    lay = stored.layout
    was_lossy = lay.transfer_syntax in LOSSY_SYNTAXES or str(
        ds.get("LossyImageCompression", "") or ""
    ).strip() == "01"
    array = stored.array
    if lay.frames == 1:
        array = array[0]
    if lay.samples == 1:
        array = array[..., 0]
    for tag in (0x7FE00001, 0x7FE00002):
        if tag in ds:
            del ds[tag]
    ds.PhotometricInterpretation = stored.photometric
    if lay.samples == 3:
        ds.PlanarConfiguration = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            encoder = _rle_encoder()
            if encoder is None:  # no pylibjpeg-rle: pydicom's own (slower) encoder
                ds.compress(RLELossless, np.ascontiguousarray(array), encoding_plugin="pydicom",
                            generate_instance_uid=False)  # identity is the header engine's
            else:
                # decoded into ``stored``: the old frames are let go before the new are made
                del ds["PixelData"]
                ds.PixelData = _rle_pixel_data(stored, encoder)
                ds["PixelData"].VR = "OB"
                ds["PixelData"].is_undefined_length = True
                ds.file_meta.TransferSyntaxUID = RLELossless
    except PixelError:
        raise
    except Exception as exc:  # noqa: BLE001 - encoders raise many types; never echo values
        raise PixelError(f"cleaned pixels cannot be re-encoded ({exc.__class__.__name__})") from None
    if was_lossy:
        ds.LossyImageCompression = "01"


#: an item's tag (FFFE,E000), as encapsulated pixel data holds it (little endian)
_ITEM = b"\xfe\xff\x00\xe0"


def _rle_encoder() -> Callable[..., bytes] | None:
    """pylibjpeg-rle's frame encoder (pydicom's wrapper re-validates the whole array first,
    which costs more than the encoding), or None without the plugin."""
    try:
        from rle.utils import encode_frame
    except ImportError:
        return None
    return encode_frame


def _rle_pixel_data(stored: Stored, encode_frame: Callable[..., bytes]) -> bytes:
    """The encapsulated PixelData value: a Basic Offset Table, then one item per frame.

    The same bytes as pydicom's ``encapsulate`` of the frames, built in one pass: that
    held the frames, its own buffer and the bytes it returned at once (three copies of a
    cine's encoded pixels where this holds two)."""
    lay = stored.layout
    array = stored.array
    order = ">" if array.dtype.byteorder == ">" else "<"
    parts: list[bytes] = [b""]  # the offset table, once the offsets are known
    offsets: list[int] = []
    at = 0
    for f in range(lay.frames):
        frame = encode_frame(np.ascontiguousarray(array[f]).tobytes(), lay.rows, lay.columns,
                             lay.samples, lay.bits_allocated, order)
        if len(frame) % 2:
            frame += b"\0"  # an item's value has an even length
        offsets.append(at)
        parts += (_ITEM + struct.pack("<I", len(frame)), frame)
        at += 8 + len(frame)
    if at > 0xFFFFFFFF:  # past what a Basic Offset Table can point at
        raise PixelError("cleaned pixels are too large to encapsulate (over 4 GiB)")
    parts[0] = _ITEM + struct.pack(f"<I{len(offsets)}I", 4 * len(offsets), *offsets)
    return b"".join(parts)
