"""The answer key: every identifying value the generator planted, and where.

A leak checker searches de-identified output for each planted value; ``retained_by``
says under which Annex E options that value may legitimately survive.  It is derived
from Table E.1-1 (``safepacs/deid/data/profile_e1_1.json``) rather than written by
hand, so the key and the profile cannot disagree: a value may survive only under an
option whose action is K for the element itself and for every sequence around it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from safepacs.deid.options import Options
from safepacs.deid.profile import load_profile

FORMAT_VERSION = 1

#: What a planted value is.  "free_text" and "private" name where it sits (inside a
#: description/comment, inside a private element); the others name what it is.
KINDS = (
    "name",
    "id",
    "date",
    "datetime",
    "time",
    "address",
    "phone",
    "email",
    "resident_id",
    "free_text",
    "private",
    "institution",
    "device",
    "uid",
    "patient_characteristic",
)


@dataclass(frozen=True)
class Planted:
    """One identifying value written at one location of one file."""

    file: str  #: path relative to the corpus root, "/" separated
    location: str  #: keyword path: "RequestAttributesSequence[0].AccessionNumber", "(0011,1012)"
    tag: str  #: tag of the element holding the value, 8 upper-case hex digits
    kind: str  #: one of KINDS
    value: str  #: the planted text (decoded, as a conformant reader gets it)
    retained_by: tuple[str, ...] = ()  #: Options fields under which it may survive
    #: True when the value is the element's whole value (or one of its values); False
    #: when it is a part: a name component, text inside a description, bytes in a blob.
    exact: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["retained_by"] = list(self.retained_by)
        return d


@dataclass(frozen=True)
class FileInfo:
    """What a test needs to know about one generated file without parsing it."""

    charset: str
    modality: str
    kind: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str
    transfer_syntax: str
    burned_in_annotation: str | None


@dataclass
class AnswerKey:
    """Everything planted in a corpus; saved as ``answer_key.json`` next to the files."""

    seed: int
    count: int
    small: bool
    files: dict[str, FileInfo] = field(default_factory=dict)
    planted: list[Planted] = field(default_factory=list)

    def to_json(self) -> str:
        doc = {
            "format": FORMAT_VERSION,
            "seed": self.seed,
            "count": self.count,
            "small": self.small,
            "files": {k: asdict(v) for k, v in self.files.items()},
            "planted": [p.to_dict() for p in self.planted],
        }
        return json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=False) + "\n"

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> AnswerKey:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            seed=doc["seed"],
            count=doc["count"],
            small=doc["small"],
            files={k: FileInfo(**v) for k, v in doc["files"].items()},
            planted=[
                Planted(**{**p, "retained_by": tuple(p["retained_by"])}) for p in doc["planted"]
            ],
        )

    def for_file(self, rel: str) -> list[Planted]:
        """The planted values of one file."""
        return [p for p in self.planted if p.file == rel]


_OPTION_NAMES = tuple(n for n in Options.field_names() if n != "accept_burned_in_risk")


@lru_cache(maxsize=4096)
def retained_by(chain: tuple[int, ...]) -> tuple[str, ...]:
    """Options under which a value at ``chain`` (outer sequence tags..., element tag) survives.

    For the element itself an option must set action K.  A sequence around it must be
    kept too: a sequence the table does not list is walked into; one it lists survives
    only under its own K options (its basic action X, Z or U* removes or rewrites it).
    """
    profile = load_profile()
    allowed = set(_OPTION_NAMES)
    for depth, tag in enumerate(chain):
        row = profile.row_for(tag)
        leaf = depth == len(chain) - 1
        if row is None:
            if leaf:
                return ()  # no option promises to keep an element the table omits
            continue
        if row.basic == "K":
            continue
        allowed &= {name for name, act in row.options.items() if act == "K"}
    return tuple(n for n in _OPTION_NAMES if n in allowed)
