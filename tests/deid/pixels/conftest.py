"""Datasets built in memory for the pixel tests: every photometric interpretation the
cleaner supports, with a known pattern, so decoding can be checked value by value."""

from __future__ import annotations

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def image(array: np.ndarray, photometric: str, *, planar: int = 0, bits_stored: int | None = None,
          ts=ExplicitVRLittleEndian) -> Dataset:
    """A Secondary Capture dataset holding ``array`` (frames, rows, cols[, 3]) as native pixels."""
    frames, rows, cols = array.shape[:3]
    samples = 3 if array.ndim == 4 else 1
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName = "TEST^PIXELS"
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    bits = array.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if array.dtype.kind == "i" else 0
    if samples == 3:
        ds.PlanarConfiguration = planar
        if planar == 1:
            array = array.transpose(0, 3, 1, 2)
    data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    ds.PixelData = data + (b"\x00" if len(data) & 1 else b"")
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    return ds


def ramp(frames: int, rows: int, cols: int, dtype, low: int, high: int) -> np.ndarray:
    """A left-to-right ramp from ``low`` to ``high`` in every frame, frame index added."""
    line = np.linspace(low, high, cols).round().astype(np.int64)
    out = np.broadcast_to(line, (frames, rows, cols)).copy()
    out += np.arange(frames)[:, None, None]
    return np.clip(out, low, high).astype(dtype)


def covered(box, findings) -> float:
    """Fraction of ``box`` (x, y, w, h) inside the union of the removed findings' boxes."""
    mask = np.zeros((box.h, box.w), bool)
    for f in findings:
        if not f.remove:
            continue
        b = f.box
        x0, y0 = max(b.x, box.x), max(b.y, box.y)
        x1, y1 = min(b.x + b.w, box.x + box.w), min(b.y + b.h, box.y + box.h)
        if x1 > x0 and y1 > y0:
            mask[y0 - box.y : y1 - box.y, x0 - box.x : x1 - box.x] = True
    return float(mask.mean())


def tesseract_missing() -> str | None:
    """Why OCR cannot run here (no Tesseract data), or None."""
    from safepacs.deid.pixels import ocr

    try:
        ocr.tessdata_dir()
    except ocr.OcrUnavailable as exc:
        return str(exc)
    return None


def ocr_missing() -> str | None:
    """Why burned-in text cannot be drawn and read back here, or None."""
    from safepacs.synth import burned

    return tesseract_missing() or burned.fonts_available()
