"""What expires when: pure over facts read from the index (no I/O, no clock).

Dates in the index are the de-identified ones.  Unless the site keeps longitudinal dates
(``retain_long_full_dates`` / ``retain_long_modified_dates``; modified dates are shifted per
patient, which keeps ages right and moves periods by at most the shift) the study date
is a dummy: the period then runs from when the archive first stored the study, which is
never earlier than the real study date, so retention is never shortened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from safepacs.retention.policy import Policy


@dataclass(frozen=True)
class StudyFacts:
    study_uid: str  # de-identified
    patient: str  # pseudonym
    modalities: frozenset[str]
    description: str
    birth_date: str  # YYYYMMDD or ""
    study_date: str  # YYYYMMDD or ""
    first_stored: datetime
    last_access: datetime | None = None
    legal_basis: str = ""
    held: bool = False
    sealed: bool = False


@dataclass(frozen=True)
class PlanEntry:
    study_uid: str
    patient: str
    policy: str
    due: datetime | None  # None: kept forever
    expired: bool
    held: bool

    @property
    def destroy(self) -> bool:
        return self.expired and not self.held


def _date(text: str) -> date | None:
    try:
        return datetime.strptime(text, "%Y%m%d").date() if len(text) == 8 else None
    except ValueError:
        return None


def age_at(birth: str, when: str) -> int | None:
    b, w = _date(birth), _date(when)
    if b is None or w is None or w < b:
        return None
    return w.year - b.year - ((w.month, w.day) < (b.month, b.day))


def _anchor(policy: Policy, facts: StudyFacts, dates_kept: bool) -> datetime:
    if policy.anchor == "last_access":
        return max(facts.first_stored, facts.last_access or facts.first_stored)
    study = _date(facts.study_date) if dates_kept else None
    return datetime.combine(study, datetime.min.time()) if study else facts.first_stored


def _due(policy: Policy, facts: StudyFacts, dates_kept: bool) -> datetime | None:
    if policy.keep_days is None:
        return None
    return _anchor(policy, facts, dates_kept) + timedelta(days=policy.keep_days)


def decide(facts: StudyFacts, policies: list[Policy], *, now: datetime, dates_kept: bool) -> PlanEntry:
    """The policy that governs one study and when it is due."""
    age = age_at(facts.birth_date, facts.study_date) if dates_kept else None
    candidates: list[Policy] = []
    for policy in policies:
        found = policy.matches(modalities=set(facts.modalities), description=facts.description,
                               age=age, legal_basis=facts.legal_basis)
        if found is False:
            continue
        candidates.append(policy)
        if found:
            break
    if not candidates or not any(p.matches(modalities=set(facts.modalities), description=facts.description,
                                           age=age, legal_basis=facts.legal_basis) for p in candidates):
        # nothing surely matches: keep forever rather than guess
        return PlanEntry(facts.study_uid, facts.patient, "no-policy", None, False, facts.held)
    dues = [(_due(p, facts, dates_kept), p) for p in candidates]
    forever = [p for d, p in dues if d is None]
    if forever:
        return PlanEntry(facts.study_uid, facts.patient, forever[0].name, None, False, facts.held)
    due, policy = max(dues, key=lambda dp: dp[0])  # type: ignore[arg-type,return-value]
    return PlanEntry(facts.study_uid, facts.patient, policy.name, due, due <= now, facts.held)


def plan(facts: list[StudyFacts], policies: list[Policy], *, now: datetime, dates_kept: bool) -> list[PlanEntry]:
    """Every study's entry, soonest due first (kept-forever last)."""
    entries = [decide(f, policies, now=now, dates_kept=dates_kept) for f in facts]
    return sorted(entries, key=lambda e: (e.due is None, e.due or datetime.max, e.study_uid))
