from datetime import datetime, timedelta

import pytest

from safepacs.retention import plan, policy
from safepacs.retention.plan import StudyFacts

NOW = datetime(2026, 6, 1)


def facts(**kw) -> StudyFacts:
    base = dict(study_uid="2.25.1", patient="P1", modalities=frozenset({"CT"}), description="CHEST",
                birth_date="19600101", study_date="20000101", first_stored=datetime(2001, 1, 1))
    base.update(kw)
    return StudyFacts(**base)


def test_default_policies_load_and_end_with_a_catch_all():
    ps = policy.defaults()
    assert ps[-1].name == "clinical-default" and ps[-1].matches(modalities=set(), description="", age=None, legal_basis="")


def test_adult_ct_follows_the_clinical_default_from_the_study_date():
    e = plan.decide(facts(), policy.defaults(), now=NOW, dates_kept=True)
    assert e.policy == "clinical-default" and e.due == datetime(2000, 1, 1) + timedelta(days=5479)
    assert e.expired and e.destroy


def test_minor_at_acquisition_is_kept_30_years():
    e = plan.decide(facts(birth_date="19950101"), policy.defaults(), now=NOW, dates_kept=True)
    assert e.policy == "minor-at-acquisition" and not e.expired


def test_unknown_age_never_shortens_retention():
    # dates not kept by de-identification: age unknown, so the minor policy's longer period wins
    e = plan.decide(facts(), policy.defaults(), now=NOW, dates_kept=False)
    assert e.policy == "minor-at-acquisition"
    assert e.due == datetime(2001, 1, 1) + timedelta(days=10958)  # from first stored, not the dummy date


def test_last_access_anchor_and_legal_basis():
    e = plan.decide(facts(legal_basis="research_consent", last_access=datetime(2024, 1, 1)), policy.defaults(), now=NOW, dates_kept=True)
    assert e.policy == "research-consent" and e.due == datetime(2024, 1, 1) + timedelta(days=1826) and not e.expired


def test_held_study_is_expired_but_not_destroyed():
    e = plan.decide(facts(held=True), policy.defaults(), now=NOW, dates_kept=True)
    assert e.expired and e.held and not e.destroy


def test_site_policy_overrides_default_by_name_and_keep_forever():
    site = policy.parse({"policies": [
        {"name": "vip-short", "match": {"study_types": ["screening"]}, "keep_days": 10},
        {"name": "clinical-default", "match": {}, "keep_days": None},
    ]}, "site")
    merged = policy.merge(site, policy.defaults())
    assert [p.name for p in merged].count("clinical-default") == 1
    e = plan.decide(facts(), merged, now=NOW, dates_kept=True)
    assert e.due is None and not e.expired
    e = plan.decide(facts(description="LUNG SCREENING"), merged, now=NOW, dates_kept=True)
    assert e.policy == "vip-short" and e.expired


def test_plan_sorts_soonest_first():
    entries = plan.plan([facts(study_uid="2.25.2", birth_date="19950101"), facts(study_uid="2.25.3")],
                        policy.defaults(), now=NOW, dates_kept=True)
    assert [e.study_uid for e in entries] == ["2.25.3", "2.25.2"]


@pytest.mark.parametrize("bad", [
    {"policies": [{"name": "x", "keep_days": -1}]},
    {"policies": [{"name": "x", "keep_days": 1, "from": "birth"}]},
    {"policies": [{"name": "x", "keep_days": 1, "match": {"colour": "red"}}]},
    {"policies": [{"name": "x", "keep_days": 1}, {"name": "x", "keep_days": 2}]},
    {"rules": []},
])
def test_malformed_policies_are_refused(bad):
    with pytest.raises(policy.PolicyError):
        policy.parse(bad, "site")


def test_age_at():
    assert plan.age_at("20000301", "20180228") == 17
    assert plan.age_at("20000301", "20180301") == 18
    assert plan.age_at("", "20180301") is None
