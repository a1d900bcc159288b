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
from collections.abc import Callable, Iterable

import numpy as np
from pydicom import Dataset
from pydicom.uid import (
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    RLELossless,
)

from safepacs.deid.pixels.frames import Layout, PixelError, Stored
from safepacs.dicom.io import _ITEM  # an item's tag (FFFE,E000), little endian

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
    write_back_frames(ds, stored.layout, ((f, stored.frame(f)) for f in range(stored.layout.frames)))


def write_back_frames(ds: Dataset, lay: Layout, frames: Iterable[tuple[int, Stored]]) -> None:
    """Re-encode ``ds``'s pixel data (RLE Lossless) from its frames, each given (already
    redacted) as a one-frame :class:`Stored` with its number, in order; a number seen
    again (a decoder that started over) replaces that frame.  Frames are encoded as they
    come, so a cine's decoded loop need never be held whole."""
    was_lossy = lay.transfer_syntax in LOSSY_SYNTAXES or str(
        ds.get("LossyImageCompression", "") or ""
    ).strip() == "01"
    encoded: list[bytes | None] = [None] * lay.frames
    whole: np.ndarray | None = None  # without pylibjpeg-rle: pydicom's encoder takes it all
    photometric = None
    given: set[int] = set()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            encoder = _rle_encoder()
            for f, one in frames:
                photometric = one.photometric
                given.add(f)
                if encoder is not None:
                    encoded[f] = _rle_frame(one, encoder)
                    continue
                if whole is None:
                    whole = np.empty((lay.frames, *one.array.shape[1:]), one.array.dtype)
                whole[f] = one.array[0]
            if photometric is None or len(given) != lay.frames:
                raise PixelError("cleaned pixels lack frames")
            for tag in (0x7FE00001, 0x7FE00002):
                if tag in ds:
                    del ds[tag]
            ds.PhotometricInterpretation = photometric
            if lay.samples == 3:
                ds.PlanarConfiguration = 0
            if encoder is None:
                array = whole[0] if lay.frames == 1 else whole
                array = array[..., 0] if lay.samples == 1 else array
                ds.compress(RLELossless, np.ascontiguousarray(array), encoding_plugin="pydicom",
                            generate_instance_uid=False)  # identity is the header engine's
            else:
                # the old frames are let go before the new ones are joined
                del ds["PixelData"]
                ds.PixelData = _encapsulated(encoded)  # type: ignore[arg-type]
                del encoded
                ds["PixelData"].VR = "OB"
                ds["PixelData"].is_undefined_length = True
                ds.file_meta.TransferSyntaxUID = RLELossless
    except PixelError:
        raise
    except Exception as exc:  # noqa: BLE001 - encoders raise many types; never echo values
        raise PixelError(f"cleaned pixels cannot be re-encoded ({exc.__class__.__name__})") from None
    if was_lossy:
        ds.LossyImageCompression = "01"


def _rle_encoder() -> Callable[..., bytes] | None:
    """pylibjpeg-rle's frame encoder (pydicom's wrapper re-validates the whole array first,
    which costs more than the encoding), or None without the plugin."""
    try:
        from rle.utils import encode_frame
    except ImportError:
        return None
    return encode_frame


def _rle_frame(one: Stored, encode_frame: Callable[..., bytes]) -> bytes:
    """One frame's RLE segments, padded to the even length an item's value has."""
    lay = one.layout
    array = one.array
    order = ">" if array.dtype.byteorder == ">" else "<"
    frame = encode_frame(np.ascontiguousarray(array[0]).tobytes(), lay.rows, lay.columns,
                         lay.samples, lay.bits_allocated, order)
    return frame + b"\0" if len(frame) % 2 else frame


def _encapsulated(frames: list[bytes]) -> bytes:
    """The encapsulated PixelData value: a Basic Offset Table, then one item per frame.

    The same bytes as pydicom's ``encapsulate`` of the frames, built in one pass: that
    held the frames, its own buffer and the bytes it returned at once (three copies of a
    cine's encoded pixels where this holds two)."""
    offsets: list[int] = []
    parts: list[bytes] = [b""]  # the offset table, once the offsets are known
    at = 0
    for frame in frames:
        offsets.append(at)
        parts += (_ITEM + struct.pack("<I", len(frame)), frame)
        at += 8 + len(frame)
    if at > 0xFFFFFFFF:  # past what a Basic Offset Table can point at
        raise PixelError("cleaned pixels are too large to encapsulate (over 4 GiB)")
    parts[0] = _ITEM + struct.pack(f"<I{len(offsets)}I", 4 * len(offsets), *offsets)
    return b"".join(parts)
