"""Each basis of access as SQL: one condition per basis for a whole study listing
(``visible_studies``), one lookup per basis for a single study (``decide``).  Both read the
same time-bounded rows with the same ``starts_at <= now < ends_at`` test, so a study is in the
listing exactly when ``decide`` allows it.  A grant at a level that re-keys per research
project opens nothing (a grant has no project key): the listing leaves it out by name
(``project_keyed``) and ``decide`` skips its row."""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, false, null, or_, select

from safepacs.access.models import (
    Account,
    BreakGlass,
    CareRelationship,
    CohortEntry,
    Grant,
    GrantStudy,
    Project,
    ProjectMember,
)
from safepacs.index.models import Patient, Study


def _patients(pseudonyms: Select) -> ColumnElement[bool]:
    return Study.patient_pk.in_(select(Patient.pk).where(Patient.patient_id.in_(pseudonyms)))


def _care_rows(account: int, now: datetime) -> ColumnElement[bool]:
    return and_(CareRelationship.account_pk == account, CareRelationship.starts_at <= now,
                CareRelationship.ends_at > now)


def _glass_rows(account: int, now: datetime) -> ColumnElement[bool]:
    return and_(BreakGlass.account_pk == account, BreakGlass.starts_at <= now, BreakGlass.ends_at > now)


def _project_rows(account: int, now: datetime) -> ColumnElement[bool]:
    member = select(ProjectMember.project_pk).where(ProjectMember.account_pk == account)
    return and_(CohortEntry.project_pk == Project.pk, Project.pk.in_(member),
                Project.starts_at <= now, Project.expires_at > now)


def _grant_rows(account: int, now: datetime, *, all_studies: bool) -> ColumnElement[bool]:
    return and_(Grant.account_pk == account, Grant.starts_at <= now, Grant.ends_at > now,
                Grant.all_studies.is_(all_studies))


def _servable_grants(account: int, now: datetime, *, all_studies: bool,
                     project_keyed: Collection[str]) -> ColumnElement[bool]:
    rows = _grant_rows(account, now, all_studies=all_studies)
    return and_(rows, Grant.level.not_in(sorted(project_keyed))) if project_keyed else rows


def condition(basis: str, account: int, now: datetime, *,
              project_keyed: Collection[str] = ()) -> ColumnElement[bool]:
    """SQL over ``Study`` true for the studies ``basis`` opens to ``account`` at ``now``;
    grant rows at the ``project_keyed`` levels open nothing (passed where the policy takes
    the level from the row)."""
    if basis == "care":
        return _patients(select(CareRelationship.patient_id).where(_care_rows(account, now)))
    if basis == "break_glass":
        return _patients(select(BreakGlass.patient_id).where(_glass_rows(account, now)))
    if basis == "project":
        rows = _project_rows(account, now)
        studies = select(CohortEntry.study_uid).where(rows, CohortEntry.study_uid.is_not(None))
        patients = select(CohortEntry.patient_id).where(rows, CohortEntry.patient_id.is_not(None))
        return or_(Study.study_uid.in_(studies), _patients(patients))
    if basis == "grant":
        named = select(GrantStudy.study_uid).join(Grant, Grant.pk == GrantStudy.grant_pk).where(
            _servable_grants(account, now, all_studies=False, project_keyed=project_keyed))
        return Study.study_uid.in_(named)
    if basis == "service":
        return select(Grant.pk).where(
            _servable_grants(account, now, all_studies=True, project_keyed=project_keyed)).exists()
    if basis == "patient":
        own = select(Account.patient_pseudonym).where(
            Account.pk == account, Account.patient_pseudonym.is_not(None))
        return _patients(own)
    return false()


def any_of(conditions: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    if not conditions:
        return false()
    return conditions[0] if len(conditions) == 1 else or_(*conditions)


def lookup(basis: str, account: int, now: datetime, study_uid: str, patient_id: str) -> Select | None:
    """A query whose rows open this one study by ``basis``, the one to use first.  Rows: (id,
    level, project code, when the basis ends) with None where the basis has none.  Grants
    return every match (a few): ``decide`` uses the first whose level a grant may carry."""
    if basis == "care":
        return select(CareRelationship.pk, null(), null(), CareRelationship.ends_at).where(
            _care_rows(account, now), CareRelationship.patient_id == patient_id).limit(1)
    if basis == "break_glass":
        return select(BreakGlass.pk, null(), null(), BreakGlass.ends_at).where(
            _glass_rows(account, now), BreakGlass.patient_id == patient_id).limit(1)
    if basis == "project":
        return (
            select(Project.pk, Project.level, Project.code, Project.expires_at)
            .where(_project_rows(account, now),
                   or_(CohortEntry.study_uid == study_uid, CohortEntry.patient_id == patient_id))
            .order_by(Project.pk).limit(1)
        )
    if basis == "grant":
        return (
            select(Grant.pk, Grant.level, null(), Grant.ends_at).join(GrantStudy, GrantStudy.grant_pk == Grant.pk)
            .where(_grant_rows(account, now, all_studies=False), GrantStudy.study_uid == study_uid)
            .order_by(Grant.pk)
        )
    if basis == "service":
        return select(Grant.pk, Grant.level, null(), Grant.ends_at).where(
            _grant_rows(account, now, all_studies=True)).order_by(Grant.pk)
    if basis == "patient":
        return select(Account.pk, null(), null(), null()).where(
            Account.pk == account, Account.patient_pseudonym == patient_id).limit(1)
    return None


@functools.cache
def _prepared(basis: str) -> Select | None:
    return lookup(basis, bindparam("b_account"), bindparam("b_now"),  # type: ignore[arg-type]
                  bindparam("b_study"), bindparam("b_patient"))


def lookup_prepared(basis: str, account: int, now: datetime, study_uid: str,
                    patient_id: str) -> tuple[Select, dict[str, Any]] | None:
    """:func:`lookup` built once per basis with bound parameters: building a statement costs
    more than running it, and ``decide`` runs on every request."""
    stmt = _prepared(basis)
    if stmt is None:
        return None
    return stmt, {"b_account": account, "b_now": now, "b_study": study_uid, "b_patient": patient_id}
