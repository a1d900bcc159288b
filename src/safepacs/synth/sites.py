"""Fictional hospitals and their equipment.

Institution, station and device values are planted too (they survive only under the
Retain Institution / Device Identity options), so each site writes them in the
script of its patients and with codes distinctive enough to search for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from safepacs.synth.names import Person, person, random_id

#: Image kinds the corpus makes, with the modality each writes in (0008,0060).
MODALITY = {"CR": "CR", "DX": "DX", "CT": "CT", "MR": "MR", "US": "US", "US_MF": "US", "XA": "XA"}

# (institution name, institution address, department, code); all GB2312 for Chinese.
_TEMPLATES: dict[str, list[tuple[str, str, str, str]]] = {
    "zh": [
        ("青禾市第三人民医院", "青禾市新华区人民路88号", "放射科", "QHS3"),
        ("云溪市中心医院", "云溪市东城区建设路201号", "医学影像科", "YXCH"),
        ("南湖大学附属第一医院", "南湖市高新区文化路16号", "影像中心", "NHU1"),
    ],
    "ja": [("桜台総合病院", "東京都桜台市中町1-2-3", "放射線科", "SKGH")],
    "ko": [("한빛대학교병원", "한빛시 중앙구 푸른로 77", "영상의학과", "HBUH")],
    "latin": [
        (
            "Klinikum Waldhausen-Süd",
            "Lindenstraße 200, 80331 Waldhausen",
            "Radiologie Haus B",
            "KLWS",
        ),
        (
            "Hospital São Bento do Vale",
            "Rua das Amoreiras 5, 4050-123 Vila Nova",
            "Imagiologia Piso 2",
            "HSBV",
        ),
    ],
    "ascii": [
        (
            "Maple Ridge Medical Center",
            "500 Harbor Blvd, Springfield, IL 62701",
            "Diagnostic Imaging Dept 4",
            "MRMC",
        )
    ],
}

# kind -> [(manufacturer, model, vendor key for private elements, weight)]
_MAKERS: dict[str, list[tuple[str, str, str, float]]] = {
    "CR": [("Agfa", "CR 85-X", "AGFA", 3), ("FUJIFILM Corporation", "FCR PROFECT CS", "", 1)],
    "DX": [
        ("Philips Medical Systems", "DigitalDiagnost", "PHILIPS", 1),
        ("GE Healthcare", "Definium 6000", "GE", 1),
        ("SIEMENS", "Ysio Max", "SIEMENS", 1),
        ("Agfa", "DX-D 300", "AGFA", 1),
    ],
    "CT": [
        ("GE MEDICAL SYSTEMS", "Revolution CT", "GE", 1),
        ("SIEMENS", "SOMATOM Force", "SIEMENS", 1),
        ("Philips", "IQon Spectral CT", "PHILIPS", 1),
    ],
    "MR": [
        ("SIEMENS", "MAGNETOM Skyra", "SIEMENS", 1),
        ("GE MEDICAL SYSTEMS", "SIGNA Premier", "GE", 1),
        ("Philips Medical Systems", "Ingenia", "PHILIPS", 1),
    ],
    "US": [("GE Healthcare", "LOGIQ E10", "GE", 1), ("Philips", "EPIQ 7G", "PHILIPS", 1)],
    "XA": [
        ("SIEMENS", "Artis zee", "SIEMENS", 1),
        ("Philips Medical Systems", "Azurion 7", "PHILIPS", 1),
    ],
}
_MAKERS["US_MF"] = _MAKERS["US"]


@dataclass(frozen=True)
class Equipment:
    """One device: who made it and the values that identify it."""

    manufacturer: str
    model: str
    vendor: str  # "GE", "SIEMENS", "PHILIPS", "AGFA" or "" (no private block)
    station_name: str
    serial_number: str


@dataclass
class Site:
    """A fictional hospital: its identity, its staff and one device per image kind."""

    script: str
    institution: str
    address: str
    department: str
    code: str
    issuer_of_patient_id: str
    physicians: list[Person] = field(default_factory=list)
    operators: list[Person] = field(default_factory=list)
    equipment: dict[str, Equipment] = field(default_factory=dict)


def make_sites(rng: random.Random) -> dict[str, list[Site]]:
    """All sites, by the script their patients' names are written in."""
    sites: dict[str, list[Site]] = {}
    for script, templates in _TEMPLATES.items():
        for name, addr, dept, code in templates:
            prefix = "Dr." if script in ("latin", "ascii") else ""
            site = Site(
                script=script,
                institution=name,
                address=addr,
                department=dept,
                code=code,
                issuer_of_patient_id=f"{code}-MRN-{rng.randrange(10, 99)}",
                physicians=[person(rng, script, prefix=prefix) for _ in range(6)],
                operators=[person(rng, script) for _ in range(4)],
            )
            for n, (kind, makers) in enumerate(_MAKERS.items(), start=1):
                maker, model, vendor, _ = rng.choices(makers, weights=[m[3] for m in makers])[0]
                site.equipment[kind] = Equipment(
                    manufacturer=maker,
                    model=model,
                    vendor=vendor,
                    station_name=f"{code}{MODALITY[kind]}{n:02d}{rng.randrange(10, 99)}",
                    serial_number=random_id(rng, f"{vendor or 'FJ'}SN", 8),
                )
            sites.setdefault(script, []).append(site)
    return sites
