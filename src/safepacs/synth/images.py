"""Per-kind image modules: SOP class, acquisition attributes and a consistent pixel module.

Nothing here identifies anyone, so it is all written with ``Planter.plain``; the
frame of reference UID is the one exception and is planted by the builder.
"""

from __future__ import annotations

import numpy as np
from pydicom.tag import Tag
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    MRImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    XRayAngiographicImageStorage,
)

from safepacs.synth import pixels
from safepacs.synth.plan import Instance
from safepacs.synth.planting import Planter

SOP_CLASS = {
    "CR": ComputedRadiographyImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "US": UltrasoundImageStorage,
    "US_MF": UltrasoundMultiFrameImageStorage,
    "XA": XRayAngiographicImageStorage,
}

#: Full-size matrices: (rows, columns).
FULL_SIZE = {
    "CR": (2048, 2048),
    "DX": (3000, 2500),
    "CT": (512, 512),
    "MR": (512, 512),
    "US": (480, 640),
    "US_MF": (480, 640),
    "XA": (512, 512),
}
_SMALL_SIDES = (32, 40, 48, 56, 64)


def matrix(inst: Instance, small: bool) -> tuple[int, int]:
    """(rows, columns) of this image; one size per series so CT/MR stacks line up."""
    if not small:
        return FULL_SIZE[inst.series.kind]
    side = _SMALL_SIDES[int(inst.series.uid[-3:]) % len(_SMALL_SIDES)]
    return (side, side + 16) if inst.series.kind in ("US", "US_MF") else (side, side)


def frames(inst: Instance, small: bool) -> int:
    """Number of frames of a multi-frame image (10-30), 1 otherwise."""
    if inst.series.kind not in ("US_MF", "XA"):
        return 1
    lo, hi = (10, 20) if inst.series.kind == "US_MF" else (15, 30)
    return 10 if small else lo + int(inst.uid[-4:]) % (hi - lo + 1)


def _ds(value: float) -> str:
    """A DS string of at most 16 characters."""
    return f"{value:.6g}"


def _pixel_module(
    pl: Planter,
    rows: int,
    cols: int,
    *,
    bits: int,
    stored: int,
    signed: bool,
    photometric: str,
    samples: int = 1,
) -> None:
    pl.plain("SamplesPerPixel", samples)
    pl.plain("PhotometricInterpretation", photometric)
    if samples == 3:
        pl.plain("PlanarConfiguration", 0)
    pl.plain("Rows", rows)
    pl.plain("Columns", cols)
    pl.plain("BitsAllocated", bits)
    pl.plain("BitsStored", stored)
    pl.plain("HighBit", stored - 1)
    pl.plain("PixelRepresentation", 1 if signed else 0)


def _pixel_data(pl: Planter, array: np.ndarray) -> None:
    data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    if len(data) % 2:
        data += b"\x00"
    pl.ds.add_new(0x7FE00010, "OB" if array.dtype.itemsize == 1 else "OW", data)


def _plane(pl: Planter, inst: Instance, rows: int, z: float, fov: float) -> None:
    spacing = _ds(fov / rows)
    pl.plain("PixelSpacing", [spacing, spacing])
    pl.plain("ImageOrientationPatient", ["1", "0", "0", "0", "1", "0"])
    pl.plain("ImagePositionPatient", [_ds(-fov / 2), _ds(-fov / 2), _ds(z)])
    pl.plain("SliceLocation", _ds(z))
    pl.plain("PositionReferenceIndicator", "")
    pl.plain("PatientPosition", "HFS")


def add_image(pl: Planter, inst: Instance, small: bool, rng: np.random.Generator) -> None:
    """Write the image-specific modules and pixel data of ``inst``."""
    kind = inst.series.kind
    rows, cols = matrix(inst, small)
    if kind not in ("CR", "DX"):
        pl.plain("BodyPartExamined", _BODY_PART[kind])  # unpaired: Laterality stays absent
    variant = int(inst.series.uid[-5:-3])  # a per-series choice that needs no extra random
    if kind in ("CR", "DX"):
        mono1 = variant % 10 < (7 if kind == "CR" else 2)
        stored = (12, 14, 16)[variant % 3]
        pl.plain("ImageType", ["ORIGINAL", "PRIMARY"])
        pl.plain("BodyPartExamined", "CHEST")
        pl.plain("ViewPosition", "PA" if inst.number == 1 else "LL")
        pl.plain("PatientOrientation", ["L", "F"])
        pl.plain("KVP", "120" if inst.number == 1 else "110")
        _pixel_module(
            pl,
            rows,
            cols,
            bits=16,
            stored=stored,
            signed=False,
            photometric="MONOCHROME1" if mono1 else "MONOCHROME2",
        )
        spacing = _ds(430.0 / rows)
        pl.plain("ImagerPixelSpacing", [spacing, spacing])
        pl.plain("WindowCenter", str(1 << (stored - 1)))
        pl.plain("WindowWidth", str(1 << stored))
        if kind == "DX":
            pl.plain("PresentationIntentType", "FOR PRESENTATION")
            pl.plain("PixelIntensityRelationship", "LOG")
            pl.plain("PixelIntensityRelationshipSign", 1)
            pl.plain("RescaleIntercept", "0")
            pl.plain("RescaleSlope", "1")
            pl.plain("RescaleType", "US")
            pl.plain("PresentationLUTShape", "INVERSE" if mono1 else "IDENTITY")
            pl.plain("LossyImageCompression", "00")
            pl.plain("DetectorType", "SCINTILLATOR")
            pl.plain("ImageLaterality", "U")
            pl.plain("PositionerType", "COLUMN")
            pl.ds.AcquisitionContextSequence = []
            _code(pl, "AnatomicRegionSequence", "51185008", "Chest")
            pa = inst.number == 1
            _code(
                pl,
                "ViewCodeSequence",
                "399348003" if pa else "399173006",
                "postero-anterior" if pa else "left lateral",
            )
        _pixel_data(pl, pixels.radiograph(rng, rows, cols, stored, mono1))
    elif kind == "CT":
        signed = variant % 2 == 0
        z = -50.0 - 5.0 * inst.number
        pl.plain("ImageType", ["ORIGINAL", "PRIMARY", "AXIAL"])
        pl.plain("KVP", "120")
        pl.plain("SliceThickness", "5")
        pl.plain("ConvolutionKernel", "STANDARD")
        pl.plain("AcquisitionNumber", 1)
        _plane(pl, inst, rows, z, 360.0)
        _pixel_module(
            pl,
            rows,
            cols,
            bits=16,
            stored=16 if signed else 12,
            signed=signed,
            photometric="MONOCHROME2",
        )
        pl.plain("RescaleIntercept", "0" if signed else "-1024")
        pl.plain("RescaleSlope", "1")
        pl.plain("RescaleType", "HU")
        pl.plain("WindowCenter", "40")
        pl.plain("WindowWidth", "400")
        _pixel_data(pl, pixels.ct_slice(rng, rows, z / 40.0, signed))
    elif kind == "MR":
        z = -20.0 + 5.0 * inst.number
        pl.plain("ImageType", ["ORIGINAL", "PRIMARY", "OTHER"])
        pl.plain("ScanningSequence", "SE")
        pl.plain("SequenceVariant", "SK")
        pl.plain("ScanOptions", "")
        pl.plain("MRAcquisitionType", "2D")
        pl.plain("SliceThickness", "5")
        pl.plain("RepetitionTime", "4500")
        pl.plain("EchoTime", "90")
        pl.plain("EchoTrainLength", "16")
        pl.plain("MagneticFieldStrength", "3")
        pl.plain("ImagedNucleus", "1H")
        _plane(pl, inst, rows, z, 240.0)
        _pixel_module(pl, rows, cols, bits=16, stored=12, signed=False, photometric="MONOCHROME2")
        pl.plain("WindowCenter", "1200")
        pl.plain("WindowWidth", "2400")
        _pixel_data(pl, pixels.mr_slice(rng, rows, z / 20.0))
    elif kind in ("US", "US_MF"):
        pl.plain("ImageType", ["ORIGINAL", "PRIMARY", "ABDOMINAL"])
        pl.plain("PatientOrientation", "")
        pl.plain("LossyImageCompression", "00")
        _pixel_module(pl, rows, cols, bits=8, stored=8, signed=False, photometric="RGB", samples=3)
        if kind == "US":
            _pixel_data(pl, pixels.ultrasound_rgb(rng, rows, cols))
        else:
            n = frames(inst, small)
            _cine(pl, n, "33.3")
            pl.plain("CineRate", 30)
            _pixel_data(pl, pixels.ultrasound_cine(rng, n, rows, cols))
    elif kind == "XA":
        n = frames(inst, small)
        pl.plain("ImageType", ["ORIGINAL", "PRIMARY", "SINGLE PLANE"])
        pl.plain("PatientOrientation", "")
        pl.plain("KVP", "80")
        pl.plain("XRayTubeCurrent", 500)
        pl.plain("ExposureTime", 8)
        pl.plain("Exposure", 4)
        pl.plain("RadiationSetting", "GR")
        pl.plain("PositionerMotion", "STATIC")
        pl.plain("PositionerPrimaryAngle", "30")
        pl.plain("PositionerSecondaryAngle", "20")
        pl.plain("PixelIntensityRelationship", "LIN")
        _cine(pl, n, "66.7")
        _pixel_module(pl, rows, cols, bits=8, stored=8, signed=False, photometric="MONOCHROME2")
        _pixel_data(pl, pixels.angiogram(rng, n, rows))
    else:
        raise ValueError(f"unknown image kind {kind!r}")


_BODY_PART = {"CT": "CHEST", "MR": "HEAD", "US": "ABDOMEN", "US_MF": "HEART", "XA": "HEART"}


def _code(pl: Planter, keyword: str, value: str, meaning: str) -> None:
    """A one-item SNOMED CT code sequence."""
    (item,) = pl.sequence(keyword)
    item.plain("CodeValue", value)
    item.plain("CodingSchemeDesignator", "SCT")
    item.plain("CodeMeaning", meaning)


def _cine(pl: Planter, n: int, frame_time: str) -> None:
    pl.plain("NumberOfFrames", n)
    pl.plain("FrameTime", frame_time)
    pl.plain("FrameIncrementPointer", Tag(0x00181063))
    pl.plain("RecommendedDisplayFrameRate", 15)
