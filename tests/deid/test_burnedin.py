"""Which objects go to pixel cleaning (or are refused without it)."""

from __future__ import annotations

import time

import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file

from safepacs.deid.batch import Job, discover, run
from safepacs.deid.burnedin import burned_in_risk
from safepacs.deid.options import Options

CT = "1.2.840.10008.5.1.4.1.1.2"
US = "1.2.840.10008.5.1.4.1.1.6.1"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"
RTDOSE = "1.2.840.10008.5.1.4.1.1.481.2"
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"


def _slide(kind: str, flag: str | None = None) -> Dataset:
    ds = _image(WSI, "SM", flag)
    ds.ImageType = ["ORIGINAL", "PRIMARY", kind, "NONE"]
    return ds


@pytest.mark.parametrize(("kind", "flag", "at_risk"), [
    ("VOLUME", None, False), ("THUMBNAIL", None, False),  # tissue
    ("VOLUME", "YES", True),  # unless it says otherwise
    ("LABEL", "NO", True), ("OVERVIEW", None, True),  # the slide's label: a name, a number
])
def test_only_a_slides_label_and_overview_images_are_at_risk(kind, flag, at_risk):
    assert (burned_in_risk(_slide(kind, flag)) is not None) == at_risk


def _image(sop_class: str, modality: str, flag: str | None) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated = 1 if sop_class == SEG else 16
    if flag is not None:
        ds.BurnedInAnnotation = flag
    return ds


@pytest.mark.parametrize(
    ("sop_class", "modality", "flag", "at_risk"),
    [
        (CT, "CT", None, True),  # an image that does not say NO: checked (fail closed)
        (CT, "CT", "NO", False),
        (US, "US", "NO", True),  # banners are burned in whatever the device says
        (SEG, "SEG", None, False),  # a computed mask: nothing renders text into it
        (RTDOSE, "RTDOSE", None, False),
        (SEG, "SEG", "YES", True),  # unless it says so
        (PARAMETRIC_MAP, "OT", None, False),  # a map whatever modality it names (highdicom: OT)
        (PARAMETRIC_MAP, "OT", "YES", True),
        (CT, "CT", "YES", True),
    ],
)
def test_which_objects_may_carry_burned_in_text(sop_class, modality, flag, at_risk):
    assert (burned_in_risk(_image(sop_class, modality, flag)) is not None) == at_risk


def test_a_one_bit_segmentation_is_de_identified_by_default(tmp_path, keys):
    """pydicom-data's liver SEG (BitsAllocated 1, no flag) was refused because the pixel
    cleaner cannot read one-bit data; a mask is not a picture, so it takes the header path."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "seg.dcm").write_bytes(open(get_testdata_file("liver.dcm"), "rb").read())
    job = Job(tmp_path / "out", None, Options(), keys.secret, None, time.time() - 1)
    (result,) = run(list(discover(src)), job)
    assert result.status == "ok", result.reason
    assert result.pixels is None  # not sent to the pixel cleaner
