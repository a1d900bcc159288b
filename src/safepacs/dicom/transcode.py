"""A stored object as Explicit VR Little Endian, for a receiver that takes nothing else.

C-GET/C-MOVE receivers that accepted only uncompressed syntaxes (DCMTK's getscu and
storescp by default, many viewers) and WADO-RS clients that ask for
``transfer-syntax=1.2.840.10008.1.2.1`` get compressed pixel data decompressed and big
endian data re-encoded.  Never another object than the one stored: a conversion that would
change the frame count or cannot be made is refused (:class:`NotConvertible`), and the
caller decides what to do (send as stored, or refuse).  A lossy original stays marked lossy
(pydicom keeps LossyImageCompression).  Pure: the input dataset is not changed.
"""

from __future__ import annotations

import copy

from pydicom import Dataset
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian

from safepacs.dicom.encaps import without_unusable_offsets
from safepacs.dicom.image import frame_count
from safepacs.dicom.panics import panics_as_errors


class NotConvertible(ValueError):
    """The object cannot be sent uncompressed as the same object; the message names no value."""


def needs_conversion(transfer_syntax: str) -> bool:
    """Whether an object stored in ``transfer_syntax`` differs from Explicit VR Little Endian
    in more than the VR encoding of its header (compressed or big endian pixel data)."""
    uid = UID(transfer_syntax)
    return uid.is_compressed or uid == ExplicitVRBigEndian


def to_explicit_little_endian(ds: Dataset) -> Dataset:
    """A copy of ``ds`` in Explicit VR Little Endian with native pixel data, or
    :class:`NotConvertible`."""
    stored = UID(str(ds.file_meta.TransferSyntaxUID))
    out = copy.deepcopy(ds)  # the stored object stays whole if conversion fails
    try:
        with panics_as_errors():
            if stored.is_compressed:
                _decompress(out)
            elif stored == ExplicitVRBigEndian:
                _to_little_endian(out)
            else:  # implicit VR: every raw element gets its VR (the dictionary's, or UN)
                for _ in out.iterall():
                    pass
                out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
                out.set_original_encoding(False, True, out.original_character_set)
    except NotConvertible:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise many types; never echo values
        raise NotConvertible(f"pixel data cannot be decoded ({type(exc).__name__})") from None
    return out


def _decompress(ds: Dataset) -> None:
    frames = frame_count(ds)
    if frames is None:
        raise NotConvertible("NumberOfFrames is malformed")
    # a Basic Offset Table that cannot be right: pydicom would trust it and return fewer
    # frames, changing NumberOfFrames to match (safepacs.dicom.encaps)
    if "PixelData" in ds:
        fixed = without_unusable_offsets(ds.PixelData, frames)
        if fixed is not None:
            ds.PixelData = fixed
    # a change of transfer syntax keeps the instance (PS3.5): pydicom would mint a new UID
    ds.decompress(generate_instance_uid=False)
    # pydicom sets NumberOfFrames to what it decoded (two fragments of a three-frame RLE
    # object become two frames): never another object than the one stored
    if frame_count(ds) != frames:
        raise NotConvertible("decoded frames do not match NumberOfFrames")


def _to_little_endian(ds: Dataset) -> None:
    """Big endian (a retired syntax) as explicit VR little endian.  Every value is decoded
    first, so the writer encodes it anew; the pixel values are written out little endian
    here (the writer copies OB/OW bytes as they are), sample-interleaved."""
    if str(ds.get("PhotometricInterpretation", "")).startswith("YBR_FULL_422"):
        raise NotConvertible("big endian subsampled colour (YBR_FULL_422) is not converted")
    if "PixelData" in ds:
        pixels = ds.pixel_array
        if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
            ds.PlanarConfiguration = 0  # pixel_array gives samples last
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
        ds["PixelData"].VR = "OW" if pixels.dtype.itemsize > 1 else "OB"
    for _ in ds.iterall():
        pass  # decodes every raw (big endian) element
    ds.set_original_encoding(False, True, ds.original_character_set)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
