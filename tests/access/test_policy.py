"""The policy file: loads, and refuses rules that would break role separation."""

from __future__ import annotations

import copy
import json

import pytest

from safepacs.access.policy import PolicyError, load, parse
from safepacs.access.principal import ADMIN_ROLES, DATA_ROLES


def test_shipped_policy_loads_with_the_default_levels():
    p = load()
    assert {r.basis: r.level for r in p.rules("physician")} == {"care": "identified", "break_glass": "identified"}
    assert p.rules("patient")[0].level == "identified"
    assert p.rules("service")[0].level == "deidentified"
    assert p.default("project_level") == "pseudonymised" and p.default("grant_level") == "anonymised"
    assert p.default("break_glass_hours") == 24 and p.default("access_token_minutes") == 15
    for role in ADMIN_ROLES:
        assert p.rules(role) == () and p.needs_totp(role)
        assert not any(p.may_act(role, a) for a in ("read", "query", "store", "export"))


def test_admin_operations_are_separated():
    p = load()
    owners = {op: set(roles) & set(ADMIN_ROLES) for op, roles in p.admin_operations.items()}
    assert all(o <= {"system_admin"} for op, o in owners.items() if op.startswith("account."))
    assert all(o <= {"security_admin"} for op, o in owners.items()
               if op.split(".")[0] in ("care", "grant", "project", "patient", "break_glass", "approval"))
    assert not any("security_auditor" in roles for op, roles in p.admin_operations.items() if op != "policy.show")
    assert not p.may("system_admin", "grant.manage") and not p.may("security_admin", "account.create")


@pytest.fixture
def raw():
    return copy.deepcopy(load().raw)


@pytest.mark.parametrize("admin", ADMIN_ROLES)
def test_policy_giving_admins_images_is_refused(raw, admin):
    bad = copy.deepcopy(raw)
    bad["actions"]["read"].append(admin)
    with pytest.raises(PolicyError):
        parse(bad)
    bad = copy.deepcopy(raw)
    bad["data_access"][admin] = [{"basis": "care", "level": "identified"}]
    with pytest.raises(PolicyError):
        parse(bad)


def test_malformed_policies_are_refused(raw, tmp_path):
    for mutate in (lambda r: r["admin_operations"].update({"x": ["root"]}),
                   lambda r: r["data_access"]["physician"].append({"basis": "magic", "level": "identified"}),
                   lambda r: r["data_access"]["physician"].append({"basis": "care", "level": "everything"}),
                   lambda r: r["approval"].update({"approvals_needed": 1}),
                   lambda r: r.pop("defaults")):
        bad = copy.deepcopy(raw)
        mutate(bad)
        with pytest.raises(PolicyError):
            parse(bad)
    path = tmp_path / "p.json"
    path.write_text("{not json")
    with pytest.raises(PolicyError):
        load(path)
    path.write_text(json.dumps(raw))
    assert load(path).rules("researcher") == load().rules("researcher")
    assert set(DATA_ROLES) == set(load().data_access)


@pytest.mark.parametrize(("role", "basis"), [("physician", "care"), ("physician", "break_glass"),
                                             ("patient", "patient"), ("service", "service")])
def test_project_keyed_level_outside_the_project_basis_is_refused(raw, role, basis):
    bad = copy.deepcopy(raw)
    bad["data_access"][role] = [{"basis": basis, "level": "pseudonymised"}]
    with pytest.raises(PolicyError, match="'pseudonymised' needs a research project"):
        parse(bad)


def test_project_keyed_level_is_fine_as_the_project_basis_level(raw):
    ok = copy.deepcopy(raw)
    ok["data_access"]["researcher"] = [{"basis": "project", "level": "pseudonymised"}]
    assert parse(ok).rules("researcher")[0].level == "pseudonymised"


def test_default_grant_level_that_needs_a_project_is_refused(raw):
    bad = copy.deepcopy(raw)
    bad["defaults"]["grant_level"] = "pseudonymised"
    with pytest.raises(PolicyError, match="grant_level needs a research project"):
        parse(bad)
