"""The shape of a corpus: patients, their studies, series and instances.

Planning is separate from building so that everything shared between files (a
patient's identity, a study's accession number, a series' frame of reference) is
decided once, and every file of that study carries the same values, as in a real
archive.  All choices come from one ``random.Random(seed)``: no clock, no uuid4.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from safepacs.synth import charsets, vocab
from safepacs.synth.charsets import Charset
from safepacs.synth.names import (
    Person,
    Phone,
    address,
    birth_date,
    email,
    person,
    phone,
    random_id,
    resident_id,
)
from safepacs.synth.sites import MODALITY, Equipment, Site, make_sites

#: Share of files per image kind (about 40% CR/DX, 35% CT, 15% MR, 5% US, 5% multi-frame).
KIND_SHARES = {
    "CR": 0.20,
    "DX": 0.20,
    "CT": 0.35,
    "MR": 0.15,
    "US": 0.05,
    "US_MF": 0.025,
    "XA": 0.025,
}

#: Character sets each script is written in.  Chinese names with characters outside
#: GB2312 are only written in GB18030 and UTF-8.
SCRIPT_CHARSETS = {
    "zh": ("GB18030", "ISO_IR 192", "ISO 2022 IR 58"),
    "ja": ("ISO 2022 IR 87", "ISO_IR 192"),
    "ko": ("ISO 2022 IR 149", "ISO_IR 192"),
    "latin": ("ISO_IR 100", "ISO_IR 192"),
    "ascii": ("ISO_IR 6",),
}
#: One (script, charset) per patient first, so that a small corpus covers them all.
_COVERAGE = [
    ("zh", "GB18030"),
    ("zh", "ISO_IR 192"),
    ("zh", "ISO 2022 IR 58"),
    ("ja", "ISO 2022 IR 87"),
    ("ko", "ISO 2022 IR 149"),
    ("latin", "ISO_IR 100"),
    ("ascii", "ISO_IR 6"),
]
_SCRIPT_WEIGHTS = {"zh": 0.45, "ja": 0.12, "ko": 0.12, "latin": 0.15, "ascii": 0.16}


@dataclass(frozen=True)
class Text:
    """Free text and the identifying substrings planted in it."""

    text: str
    embedded: tuple[str, ...] = ()


@dataclass
class Patient:
    index: int
    who: Person
    script: str
    charsets: tuple[str, ...]
    patient_id: str
    patient_id_kind: str  # "id" or "resident_id"
    birth: date
    other_ids: list[tuple[str, str, str]]  # (value, kind, issuer)
    address: str
    phones: list[Phone]
    email: str
    mother: Person
    ethnic_group: str
    occupation: str
    size: str
    weight: str
    uid: str  # referenced by ReferencedPatientSequence
    comments: Text
    studies: list[Study] = field(default_factory=list)


@dataclass
class Study:
    index: int
    patient: Patient
    site: Site
    charset: Charset
    uid: str
    when: datetime
    accession: str
    study_id: str
    procedure: str
    procedure_code: str
    description: Text
    code_meaning: Text
    requested: Text
    history: Text
    referring: Person
    requesting: Person
    readers: list[Person]
    requested_procedure_id: str
    scheduled_step_id: str
    performed_step_id: str
    prior_uid: str | None
    #: optional parts, as different RIS/modalities fill different attributes
    has: frozenset[str]
    series: list[Series] = field(default_factory=list)

    @property
    def age(self) -> str:
        b, d = self.patient.birth, self.when.date()
        return f"{d.year - b.year - ((d.month, d.day) < (b.month, b.day)):03d}Y"


@dataclass
class Series:
    study: Study
    number: int
    kind: str
    uid: str
    frame_of_reference_uid: str
    when: datetime
    description: Text
    equipment: Equipment
    performing: Person
    operators: list[Person]
    instances: list[Instance] = field(default_factory=list)

    @property
    def modality(self) -> str:
        return MODALITY[self.kind]


@dataclass
class Instance:
    series: Series
    number: int
    index: int  # position in the corpus: seeds this file's own random streams
    uid: str
    when: datetime
    implicit_vr: bool
    burned_in: str | None
    comments: Text | None
    referenced: Instance | None  # ReferencedImageSequence / SourceImageSequence target

    @property
    def path(self) -> str:
        s = self.series
        return (
            f"P{s.study.patient.index:04d}/ST{s.study.index:02d}/SE{s.number:02d}/"
            f"{s.modality}{self.number:04d}.dcm"
        )


class Uids:
    """``2.25.<128-bit integer>`` UIDs from the seeded generator (PS3.5 B.2).

    The only dotted boundary is "2.25.", so decimal values such as a weight "72.35"
    or a height "1.735" can never occur inside a UID.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def new(self) -> str:
        return f"2.25.{(1 << 127) | self._rng.getrandbits(127)}"


def _kind_counts(count: int) -> dict[str, int]:
    """Files per kind by largest remainder, so the shares hold for any ``count``."""
    exact = {k: count * s for k, s in KIND_SHARES.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True):
        if sum(counts.values()) >= count:
            break
        counts[k] += 1
    return counts


def _chunks(rng: random.Random, n: int, lo: int, hi: int) -> list[int]:
    sizes = []
    while n > 0:
        sizes.append(min(n, rng.randint(lo, hi)))
        n -= sizes[-1]
    return sizes


def _study_layouts(rng: random.Random, count: int) -> list[list[list[str]]]:
    """Each study as a list of series, each series a list of image kinds."""
    counts = _kind_counts(count)
    studies: list[list[list[str]]] = []
    for kind in ("CR", "DX"):
        for n in _chunks(rng, counts[kind], 1, 3):
            split = n > 1 and rng.random() < 0.5  # PA and LAT in one series, or one each
            studies.append([[kind] for _ in range(n)] if split else [[kind] * n])
    for n in _chunks(rng, counts["CT"], 4, 16):
        first = n // 2 if n >= 8 and rng.random() < 0.5 else n
        studies.append([["CT"] * first] + ([["CT"] * (n - first)] if n > first else []))
    for n in _chunks(rng, counts["MR"], 4, 12):
        studies.append([["MR"] * k for k in _chunks(rng, n, 2, 4)])
    us = ["US"] * counts["US"] + ["US_MF"] * counts["US_MF"]
    rng.shuffle(us)
    while us:
        take = us[: rng.randint(1, 4)]
        us = us[len(take) :]
        studies.append([[k for k in take if k == kind] for kind in ("US", "US_MF") if kind in take])
    for n in _chunks(rng, counts["XA"], 1, 3):
        studies.append([["XA"] for _ in range(n)])
    rng.shuffle(studies)
    return studies


def _text(
    rng: random.Random, plain: str, options: list[tuple[str, tuple[str, ...]]], p: float
) -> Text:
    """``plain`` with probability 1-p, else one of the identifying variants."""
    if rng.random() >= p:
        return Text(plain)
    text, embedded = rng.choice(options)
    return Text(text, embedded)


def _dob_text(p: Patient) -> str:
    b = p.birth
    if p.script in ("zh", "ja"):
        return f"{b.year}年{b.month}月{b.day}日"
    return b.strftime("%Y-%m-%d") if p.script != "latin" else b.strftime("%d/%m/%Y")


def _make_patient(rng: random.Random, uids: Uids, index: int, script: str, charset: str) -> Patient:
    allowed = SCRIPT_CHARSETS[script]
    # A patient registered by a modern (GB18030/UTF-8) system may have a name outside
    # GB2312 or written bare; such a name is then never written in ISO 2022 IR 58.
    modern = script == "zh" and charset != "ISO 2022 IR 58" and rng.random() < 0.4
    who = person(rng, script, rare=modern and rng.random() < 0.5, bare=modern)
    if modern:
        allowed = tuple(c for c in allowed if c != "ISO 2022 IR 58")
    charset_pref = (charset,) + tuple(c for c in allowed if c != charset)
    birth = birth_date(rng)
    other: list[tuple[str, str, str]] = []
    pid, pid_kind = random_id(rng, rng.choice(["MRN", "PID", "H"]), 8), "id"
    if script == "zh":
        rid = resident_id(rng, birth, who.sex, want_x=rng.random() < 0.25)
        if rng.random() < 0.35:
            pid, pid_kind = rid, "resident_id"
        other.append((rid, "resident_id", "CHN-NHC-RID"))
        other.append((random_id(rng, "YB", 10), "id", "CHN-NHSA"))
    elif script == "ko":
        other.append(
            (
                f"{birth:%y%m%d}-{rng.choice('13' if who.sex == 'M' else '24')}"
                f"{rng.randrange(100000, 999999)}",
                "id",
                "KOR-RRN",
            )
        )
    elif script == "ascii":
        other.append(
            (
                f"9{rng.randrange(10, 99)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}",
                "id",
                "USA-SSA",
            )
        )
    else:
        other.append((random_id(rng, "INS", 9), "id", f"{script.upper()}-INSURANCE"))
    phones = [phone(rng, script) for _ in range(rng.choice([1, 1, 2]))]
    mail = email(rng, who, birth)
    addr = address(rng, script)
    p = Patient(
        index=index,
        who=who,
        script=script,
        charsets=charset_pref,
        patient_id=pid,
        patient_id_kind=pid_kind,
        birth=birth,
        other_ids=other,
        address=addr,
        phones=phones,
        email=mail,
        mother=person(rng, script, "F"),
        ethnic_group=rng.choice(vocab.ETHNIC[script]),
        occupation=rng.choice(vocab.OCCUPATION[script]),
        size=f"{rng.uniform(1.50, 1.92):.3f}",
        weight=f"{rng.uniform(45, 110):.2f}",
        uid=uids.new(),
        comments=Text(""),
    )
    p.comments = _text(
        rng,
        "No known allergies.",
        [
            (f"Contact: {mail}; {addr}", (mail, addr)),
            (
                f"Prefers e-mail {mail}. Next of kin {p.mother.display} {phones[0].spoken}",
                (mail, p.mother.display, phones[0].spoken),
            ),
            (f"Alt ID {other[0][0]}. Tel {phones[-1].spoken}", (other[0][0], phones[-1].spoken)),
        ],
        0.8,
    )
    return p


_OPTIONAL = (
    "mother",
    "address",
    "phone",
    "email",
    "ethnic",
    "occupation",
    "other_ids",
    "other_ids_seq",
    "history",
    "patient_comments",
    "request",
    "procedure_code",
    "ref_study",
    "ref_patient",
    "size_weight",
    "ris_private",
)


def _make_study(
    rng: random.Random,
    uids: Uids,
    patient: Patient,
    index: int,
    site: Site,
    charset: Charset,
    when: datetime,
    kinds: list[list[str]],
) -> Study:
    lead = "US" if kinds[0][0] == "US_MF" else kinds[0][0]
    proc = rng.choice(vocab.PROCEDURES[lead])
    who, pid = patient.who, patient.patient_id
    acc = rng.choice(
        [
            random_id(rng, "A", 8),
            random_id(rng, "RIS", 7),
            f"{MODALITY[lead]}{when:%y%m%d}{rng.randrange(1000, 9999)}",
        ]
    )
    ph = patient.phones[0]
    study = Study(
        index=index,
        patient=patient,
        site=site,
        charset=charset,
        uid=uids.new(),
        when=when,
        accession=acc,
        study_id=random_id(rng, "ST", 6),
        procedure=proc,
        procedure_code=f"{MODALITY[lead]}{rng.randrange(1000, 9999)}",
        description=_text(
            rng,
            proc,
            [
                (f"{proc} {who.display}", (who.display,)),
                (f"{proc} ID {pid}", (pid,)),
                (f"{who.display} {proc}", (who.display,)),
            ],
            0.6,
        ),
        code_meaning=_text(rng, proc, [(f"{proc} ACC {acc}", (acc,))], 0.15),
        requested=_text(
            rng,
            proc,
            [
                (f"{proc} CALL {ph.short}", (ph.short,)),
                (f"{proc} FOR {who.display}", (who.display,)),
            ],
            0.6,
        ),
        history=Text(""),
        referring=rng.choice(site.physicians),
        requesting=rng.choice(site.physicians),
        readers=rng.sample(site.physicians, rng.choice([1, 1, 2])),
        requested_procedure_id=random_id(rng, "RP", 7),
        scheduled_step_id=random_id(rng, "SPS", 7),
        performed_step_id=random_id(rng, "PPS", 7),
        prior_uid=patient.studies[-1].uid if patient.studies else None,
        has=frozenset(o for o in _OPTIONAL if rng.random() < 0.7),
    )
    reason = rng.choice(vocab.REASONS)
    dob = _dob_text(patient)
    study.history = _text(
        rng,
        f"Referred for {reason}.",
        [
            (
                f"Referred for {reason}. Patient {who.display}, tel {ph.spoken}.",
                (who.display, ph.spoken),
            ),
            (f"{who.display} DOB {dob}: {reason}.", (who.display, dob)),
            (f"Referred for {reason}.\r\nID {pid}, {patient.address}", (pid, patient.address)),
        ],
        0.7,
    )
    for number, series_kinds in enumerate(kinds, start=1):
        kind = series_kinds[0]
        s_when = when + timedelta(
            minutes=rng.randrange(1, 25) + 5 * number, microseconds=rng.randrange(1_000_000)
        )
        desc = rng.choice(vocab.SERIES[kind])
        series = Series(
            study=study,
            number=number,
            kind=kind,
            uid=uids.new(),
            frame_of_reference_uid=study.series[0].frame_of_reference_uid
            if study.series and rng.random() < 0.7
            else uids.new(),
            when=s_when,
            description=_text(
                rng,
                desc,
                [(f"{desc} {who.display}", (who.display,)), (f"{desc} {pid}", (pid,))],
                0.3,
            ),
            equipment=site.equipment[kind],
            performing=rng.choice(site.physicians),
            operators=rng.sample(site.operators, rng.choice([1, 2])),
        )
        study.series.append(series)
    return study


def _add_study(
    rng: random.Random,
    uids: Uids,
    patient: Patient,
    site: Site,
    charset: Charset,
    when: datetime,
    kinds: list[list[str]],
    instances: list[Instance],
) -> None:
    """Plan one study of ``patient`` and append its instances to ``instances``."""
    study = _make_study(rng, uids, patient, len(patient.studies) + 1, site, charset, when, kinds)
    patient.studies.append(study)
    for series, series_kinds in zip(study.series, kinds, strict=True):
        for number in range(1, len(series_kinds) + 1):
            prev = series.instances[-1] if series.instances else None
            if prev is None and series.number > 1:
                prev = study.series[0].instances[0]
            inst = Instance(
                series=series,
                number=number,
                index=len(instances),
                uid=uids.new(),
                when=series.when
                + timedelta(seconds=3 * number, microseconds=rng.randrange(1_000_000)),
                implicit_vr=rng.random() < 0.15,
                burned_in=_burned_in(rng, series.kind),
                comments=_image_comments(rng, patient),
                referenced=prev,
            )
            series.instances.append(inst)
            instances.append(inst)


def _first_visit(rng: random.Random) -> datetime:
    return datetime(2016, 1, 4, 7, 30) + timedelta(days=rng.randrange(0, 8 * 365 - 400))


def plan_corpus(seed: int, count: int) -> list[Instance]:
    """Every file of a ``count``-file corpus, in the order they are written."""
    if count < 1:
        raise ValueError("count must be at least 1")
    rng = random.Random(seed)
    uids = Uids(rng)
    sites = make_sites(rng)
    layouts = _study_layouts(rng, count)
    coverage = _COVERAGE[:]
    rng.shuffle(coverage)
    instances: list[Instance] = []
    patient_no = 0
    while layouts:
        patient_no += 1
        take = min(len(layouts), rng.choice([1, 1, 2, 2, 3, 4]))
        mine, layouts = layouts[:take], layouts[take:]
        if coverage:
            script, first = coverage.pop()
        else:
            script = rng.choices(list(_SCRIPT_WEIGHTS), weights=list(_SCRIPT_WEIGHTS.values()))[0]
            first = rng.choice(SCRIPT_CHARSETS[script])
        patient = _make_patient(rng, uids, patient_no, script, first)
        when = _first_visit(rng)
        for s_no, kinds in enumerate(mine, start=1):
            when += timedelta(
                days=rng.randrange(0, 200) if s_no > 1 else 0,
                minutes=rng.randrange(0, 600),
                seconds=rng.randrange(60),
                microseconds=rng.randrange(1_000_000),
            )
            label = patient.charsets[0] if s_no == 1 else rng.choice(patient.charsets)
            site = rng.choice(sites[script])
            _add_study(rng, uids, patient, site, charsets.CHARSETS[label], when, kinds, instances)
    return instances


def plan_one(rng: random.Random, kind: str, charset: str) -> Instance:
    """A single-file plan of image ``kind`` written in ``charset`` (see make_dataset)."""
    if kind not in KIND_SHARES:
        raise ValueError(f"unknown image kind {kind!r}; one of {', '.join(KIND_SHARES)}")
    scripts = [s for s, labels in SCRIPT_CHARSETS.items() if charset in labels]
    if not scripts:
        raise ValueError(f"unknown charset {charset!r}; one of {', '.join(charsets.CHARSETS)}")
    uids = Uids(rng)
    script = rng.choice(scripts)
    sites = make_sites(rng)
    patient = _make_patient(rng, uids, 1, script, charset)
    instances: list[Instance] = []
    _add_study(
        rng,
        uids,
        patient,
        rng.choice(sites[script]),
        charsets.CHARSETS[charset],
        _first_visit(rng),
        [[kind]],
        instances,
    )
    return instances[0]


def _burned_in(rng: random.Random, kind: str) -> str | None:
    """US, multi-frame and DX (where it is Type 1) say "NO"; others sometimes omit it."""
    if kind in ("US", "US_MF", "XA", "DX"):
        return "NO"
    return "NO" if rng.random() < 0.5 else None


def _image_comments(rng: random.Random, p: Patient) -> Text | None:
    if rng.random() < 0.4:
        return None
    return _text(
        rng,
        "Image acquired without incident.",
        [
            (f"QC: {p.who.display} repositioned once", (p.who.display,)),
            (f"Patient {p.patient_id} moved; repeat exposure", (p.patient_id,)),
            (f"Call {p.phones[0].spoken} if results urgent", (p.phones[0].spoken,)),
        ],
        0.6,
    )
