"""The options of DICOM PS3.15 Annex E, named as the standard names them."""

from __future__ import annotations

from dataclasses import dataclass, fields

# CID 7050 De-identification Method codes (PS3.16), scheme DCM.
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA_CODE = ("113101", "Clean Pixel Data Option")

#: option field -> (code value, code meaning)
OPTION_CODES: dict[str, tuple[str, str]] = {
    "clean_graphics": ("113103", "Clean Graphics Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_long_full_dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain_long_modified_dates": (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
}

#: Values of :attr:`Options.clean_pixels`.
CLEAN_PIXELS_MODES = ("auto", "always", "never")

# Order in which an option's action overrides the basic profile's when several options
# name the same attribute: the more protective wins ("C" cleans, "K" keeps).
_OPTION_ORDER = tuple(OPTION_CODES)


@dataclass(frozen=True)
class Options:
    """Which Annex E options are in force.  All False is the Basic Profile alone."""

    retain_safe_private: bool = False
    retain_uids: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_patient_characteristics: bool = False
    retain_long_full_dates: bool = False
    retain_long_modified_dates: bool = False
    clean_descriptors: bool = False
    clean_structured_content: bool = False
    clean_graphics: bool = False
    #: With pixel cleaning off, the user accepts that pixel data may carry burned-in text.
    accept_burned_in_risk: bool = False
    #: Clean Pixel Data (113101): "auto" cleans files that may carry burned-in text
    #: (:func:`~safepacs.deid.burnedin.burned_in_risk`), "always" every file with pixels,
    #: "never" none (risky files are then refused unless ``accept_burned_in_risk``).
    clean_pixels: str = "auto"
    #: Remove every text box found in the pixels, not only identifying ones.
    remove_all_text: bool = False

    def __post_init__(self) -> None:
        if self.clean_pixels not in CLEAN_PIXELS_MODES:
            raise ValueError(f"clean_pixels must be one of {', '.join(CLEAN_PIXELS_MODES)}")
        if self.retain_long_full_dates and self.retain_long_modified_dates:
            raise ValueError(
                "choose one of Retain Longitudinal Temporal Information with Full Dates "
                "or with Modified Dates, not both"
            )

    @property
    def enabled(self) -> tuple[str, ...]:
        """Names of the Annex E options switched on, in CID 7050 order."""
        return tuple(name for name in _OPTION_ORDER if getattr(self, name))

    def method_codes(self) -> list[tuple[str, str]]:
        """CID 7050 codes for DeidentificationMethodCodeSequence: basic + exactly the options."""
        return [BASIC_PROFILE_CODE] + [OPTION_CODES[name] for name in self.enabled]

    @classmethod
    def from_codes(cls, codes: list[str]) -> Options:
        """Rebuild the options from CID 7050 code values found in a de-identified file."""
        by_code = {code: name for name, (code, _) in OPTION_CODES.items()}
        return cls(**{by_code[c]: True for c in codes if c in by_code})

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
