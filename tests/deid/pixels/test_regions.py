"""Fixed regions: device rules from the data file, ultrasound banner bands."""

from __future__ import annotations

from pydicom import Dataset
from pydicom.sequence import Sequence

from safepacs.deid.pixels.regions import (
    US_FALLBACK_BAND,
    device_regions,
    device_rules,
    fixed_regions,
    ultrasound_regions,
)


def us_header(*tops: int) -> Dataset:
    ds = Dataset()
    ds.Modality = "US"
    ds.Manufacturer = "Acme Sonics"
    items = []
    for top in tops:
        item = Dataset()
        item.RegionLocationMinX0 = 10
        item.RegionLocationMinY0 = top
        item.RegionLocationMaxX1 = 500
        item.RegionLocationMaxY1 = 580
        items.append(item)
    if items:
        ds.SequenceOfUltrasoundRegions = Sequence(items)
    return ds


def test_ultrasound_banner_is_every_row_above_the_highest_data_region():
    (band,) = ultrasound_regions(us_header(72, 90), 600, 800)
    assert (band.x, band.y, band.w, band.h, band.rule) == (0, 0, 800, 72, "us-region")


def test_ultrasound_without_regions_gets_the_fallback_band():
    (band,) = ultrasound_regions(us_header(), 600, 800)
    assert band.h == round(600 * US_FALLBACK_BAND) and band.w == 800


def test_ultrasound_region_starting_at_the_top_leaves_no_band():
    assert ultrasound_regions(us_header(0), 600, 800) == []


def test_other_modalities_have_no_ultrasound_band():
    ds = Dataset()
    ds.Modality = "CR"
    assert ultrasound_regions(ds, 2048, 2048) == []


def test_device_rule_matches_manufacturer_model_and_matrix():
    ds = Dataset()
    ds.Modality = "US"
    ds.Manufacturer = "Philips Ultrasound"
    ds.ManufacturerModelName = "EPIQ 7G"
    (box,) = device_regions(ds, 768, 1024)
    assert (box.x, box.y, box.w, box.rule) == (0, 0, 1024, "device-region")
    assert device_regions(ds, 600, 800) == []  # another matrix: another layout
    ds.ManufacturerModelName = "Affiniti 70"
    assert device_regions(ds, 768, 1024) == []


def test_fractional_rule_scales_with_the_matrix_and_stays_inside():
    ds = Dataset()
    ds.Modality = "SC"
    (box,) = device_regions(ds, 1000, 2000)
    assert (box.x, box.y, box.w, box.h) == (0, 0, 2000, 60)
    for region in fixed_regions(ds, 7, 9):
        assert region.x + region.w <= 9 and region.y + region.h <= 7


def test_every_rule_in_the_data_file_is_well_formed():
    for rule in device_rules():
        assert rule["name"] and rule["boxes"]
        assert rule.get("unit") in ("px", "fraction")
        for box in rule["boxes"]:
            assert len(box) == 4 and all(v >= 0 for v in box)


def test_manufacturer_matches_whole_words_only():
    ds = Dataset()
    ds.Modality = "US"
    ds.ManufacturerModelName = "LOGIQ E10"
    ds.Manufacturer = "GE Healthcare"
    assert [r.rule for r in device_regions(ds, 720, 960)] == ["device-region"]
    ds.Manufacturer = "General Sonics"
    assert device_regions(ds, 720, 960) == []


def test_a_whole_slides_label_image_is_cleaned_whole_and_its_tissue_is_not_touched():
    ds = Dataset()
    ds.Modality = "SM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]
    (box,) = device_regions(ds, 300, 900)
    assert (box.x, box.y, box.w, box.h) == (0, 0, 900, 300)
    for kind in ("VOLUME", "OVERVIEW", "THUMBNAIL"):
        ds.ImageType = ["ORIGINAL", "PRIMARY", kind, "NONE"]
        assert device_regions(ds, 300, 900) == []
