"""The DICOM JSON model of stored objects, odd values included."""

from __future__ import annotations

import warnings

from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.sequence import Sequence

from safepacs.api.dicomjson import dumps, to_json


def _invalid_is(tag: int, text: str) -> RawDataElement:
    """An IS element as read from a file whose device wrote something not a number."""
    raw = text.encode("ascii")
    return RawDataElement(tag, "IS", len(raw), raw, 0, False, True)


def test_values_that_are_not_numbers_go_as_strings_at_any_depth():
    """A device wrote IS "1A": pydicom's JSON conversion raises on it, and the metadata
    route answered 500 for the whole instance."""
    ds = Dataset()
    ds.PatientID = "SP2AAAAAAAAAAAAAAA"
    ds.add(_invalid_is(0x00200013, "1A"))  # InstanceNumber
    item = Dataset()
    item.add(_invalid_is(0x00081160, "7\\x"))  # ReferencedFrameNumber, two values
    item.ReferencedSOPInstanceUID = "2.25.1"
    ds.ReferencedImageSequence = Sequence([item])
    ds.SliceThickness = "1.25"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of the invalid values as it reads them
        out = to_json(ds)
    assert out["00200013"] == {"vr": "IS", "Value": ["1A"]}
    nested = out["00081140"]["Value"][0]
    assert nested["00081160"] == {"vr": "IS", "Value": [7, "x"]}
    assert nested["00081155"] == {"vr": "UI", "Value": ["2.25.1"]}
    assert out["00180050"] == {"vr": "DS", "Value": [1.25]}  # valid values stay numbers
    assert out["00100020"]["Value"] == ["SP2AAAAAAAAAAAAAAA"]
    dumps([out])  # and it serialises
