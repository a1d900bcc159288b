"""Generate ``src/safepacs/deid/data/profile_e1_1.json`` from a machine-readable
copy of DICOM PS3.15 Annex E, Table E.1-1.

Usage: python tools/gen_profile.py ../shared/standard/confidentiality_profile_attributes.json

The generated file is data, not code: the de-identifier reads it at start-up.
Rerun this script when the standard's table is updated.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OPTION_KEYS = {
    "rtnSafePrivOpt": "retain_safe_private",
    "rtnUIDsOpt": "retain_uids",
    "rtnDevIdOpt": "retain_device_identity",
    "rtnInstIdOpt": "retain_institution_identity",
    "rtnPatCharsOpt": "retain_patient_characteristics",
    "rtnLongFullDatesOpt": "retain_long_full_dates",
    "rtnLongModifDatesOpt": "retain_long_modified_dates",
    "cleanDescOpt": "clean_descriptors",
    "cleanStructContOpt": "clean_structured_content",
    "cleanGraphOpt": "clean_graphics",
}


def convert(rows: list[dict]) -> dict:
    out = []
    for row in rows:
        tag = row["tag"]
        if "WHERE GGGG IS ODD" in tag.upper():
            pattern = "private"
        else:
            pattern = tag.strip("()").replace(",", "").upper()
        out.append(
            {
                "tag": pattern,
                "name": row["name"],
                "basic": row["basicProfile"],
                "options": {OPTION_KEYS[k]: v for k, v in row.items() if k in OPTION_KEYS},
            }
        )
    out.sort(key=lambda r: r["tag"])
    return {
        "table": "DICOM PS3.15 Annex E, Table E.1-1 Application Level Confidentiality Profile "
        "Attributes",
        "edition": "DICOM standard as published in January 2025 (2025a)",
        "source": "innolitics/dicom-standard, standard/confidentiality_profile_attributes.json, "
        "commit 7f4749d (January 2025), MIT licence (see LICENSE-innolitics-dicom-standard.txt)",
        "generated_by": "tools/gen_profile.py",
        "rows": out,
    }


def main(argv: list[str]) -> int:
    src = Path(argv[1])
    dest = Path(__file__).resolve().parent.parent / "src/safepacs/deid/data/profile_e1_1.json"
    data = convert(json.loads(src.read_text(encoding="utf-8")))
    dest.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(data['rows'])} rows to {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
