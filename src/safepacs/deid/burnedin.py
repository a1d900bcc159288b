"""Which objects may carry identity burned into their pixels.

Header de-identification cannot see pixels.  An object whose header says it has burned-in
text, or that is an image whose header does not say "NO", is cleaned by Clean Pixel
Data (``clean_pixels="auto"``), or refused when pixel cleaning is off unless the user
explicitly accepts the risk.
"""

from __future__ import annotations

from pydicom import Dataset

#: Modalities that commonly carry burned-in annotation (ultrasound banners, screen
#: captures, angiography overlays, endoscopy and photographs, scanned documents).
RISKY_MODALITIES = frozenset({"US", "IVUS", "SC", "OT", "XA", "RF", "ES", "XC", "GM", "SM", "DOC"})

#: SOP classes that are screen captures, photographs, video or documents.
RISKY_SOP_CLASS_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture family (incl. multi-frame SC)
    "1.2.840.10008.5.1.4.1.1.104.",  # Encapsulated PDF / CDA / STL ...
    "1.2.840.10008.5.1.4.1.1.77.1.",  # Visible light (endoscopy, photography, video)
    "1.2.840.10008.5.1.4.1.1.6.",  # Ultrasound
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound multi-frame
)

#: SOP classes whose pixels are computed maps, not pictures: segmentation masks (often one
#: bit per pixel), dose grids, parametric maps.  Nothing renders text into them, and erasing
#: "text" that OCR thinks it sees in a mask would damage the data: only an explicit
#: BurnedInAnnotation YES sends them to pixel cleaning.
COMPUTED_MAP_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation
    "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT Dose
})

#: VL Whole Slide Microscopy: its VOLUME and THUMBNAIL images are tissue (a slide's tiles,
#: and the same downsampled); its LABEL and OVERVIEW images show the slide's label, which
#: carries the patient's name or number, and stay at risk like any other photograph
WHOLE_SLIDE = "1.2.840.10008.5.1.4.1.1.77.1.6"
TISSUE_ONLY = frozenset({"VOLUME", "THUMBNAIL"})


def burned_in_risk(ds: Dataset) -> str | None:
    """Why ``ds`` may carry burned-in identity, or None when there is no known reason."""
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if flag == "YES":
        return "BurnedInAnnotation is YES"
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class in COMPUTED_MAP_SOP_CLASSES:
        return None  # a map, whatever modality it names (a parametric map's is often OT)
    if sop_class == WHOLE_SLIDE and image_kind(ds) in TISSUE_ONLY:
        # tiles of tissue: nothing is drawn on them (the slide's label is its own image,
        # LABEL, cleaned as any other), and three tiles read by OCR would have decided
        # what to erase from thousands of others
        return None
    # Kinds that usually carry text (ultrasound banners, screen captures...) are checked
    # whatever the flag says: devices are known to write "NO" over a burned-in banner.
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality in RISKY_MODALITIES:
        return f"modality {modality} commonly carries burned-in text"
    if any(sop_class.startswith(p) for p in RISKY_SOP_CLASS_PREFIXES):
        return "SOP class commonly carries burned-in text"
    if flag == "NO":
        return None
    if _is_image(ds):
        # Fail closed: radiographs and even CT slices are found in the wild with a name and a
        # date burned in (the TCIA pseudo-PHI CR and CT among them) and no flag.  Only an
        # explicit "NO" spares an image the (cheap, when there is no text) pixel check.
        return "image without BurnedInAnnotation NO may carry burned-in text"
    return None


def image_kind(ds: Dataset) -> str:
    """ImageType's third value, upper case ("" when absent): a whole slide's VOLUME,
    THUMBNAIL, LABEL or OVERVIEW."""
    value = ds.get("ImageType")
    values = list(value) if value is not None and not isinstance(value, str) else str(value or "").split("\\")
    return str(values[2]).strip().upper() if len(values) > 2 else ""


def _is_image(ds: Dataset) -> bool:
    """The header describes pixel data (it is read without the pixels themselves)."""
    return "Rows" in ds and "Columns" in ds and ("BitsAllocated" in ds or "PixelData" in ds)
