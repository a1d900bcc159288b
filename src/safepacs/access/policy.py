"""The access policy as data (``data/policy.json``), checked when loaded.

A small module rather than pycasbin: the rules are a few lookups (role -> admin operations,
role -> ordered bases with levels, role -> actions), the time-bounded facts live in the
database and are evaluated inside SQL (``visible_studies``), which a Casbin enforcer could not
do without loading every grant into memory.  The file is the single place a reviewer reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from safepacs.access.principal import ACTIONS, ADMIN_ROLES, DATA_ROLES, LEVELS, ROLES
from safepacs.errors import SafepacsError
from safepacs.render.levels import builtin_levels

BASES = ("care", "break_glass", "project", "grant", "patient", "service")
_DYNAMIC_LEVELS = {"project", "grant"}  # the level comes from the project / grant row


class PolicyError(SafepacsError):
    """The policy file is malformed or breaks a rule the code relies on."""


@dataclass(frozen=True)
class Rule:
    basis: str
    level: str  # a level name, or "project" / "grant"


@dataclass(frozen=True)
class Policy:
    admin_operations: dict[str, tuple[str, ...]]
    data_access: dict[str, tuple[Rule, ...]]
    actions: dict[str, tuple[str, ...]]
    purposes: dict[str, str]
    totp_required: frozenset[str]
    break_glass_reasons: tuple[str, ...]
    approval_operations: tuple[str, ...]
    approvals_needed: int
    approval_must_include: str
    defaults: dict[str, Any]
    raw: dict[str, Any]

    def may(self, role: str, operation: str) -> bool:
        """Whether ``role`` may perform the admin/self-service ``operation`` (unknown: no)."""
        return role in self.admin_operations.get(operation, ())

    def may_act(self, role: str, action: str) -> bool:
        return role in self.actions.get(action, ())

    def rules(self, role: str) -> tuple[Rule, ...]:
        return self.data_access.get(role, ())

    def needs_totp(self, role: str) -> bool:
        return role in self.totp_required

    def default(self, name: str) -> Any:
        return self.defaults[name]


def parse(raw: dict[str, Any]) -> Policy:
    """Build and validate a policy; refuses anything that would let an admin read images."""
    try:
        ops = {op: tuple(roles) for op, roles in raw["admin_operations"].items()}
        access = {
            role: tuple(Rule(r["basis"], r["level"]) for r in rules)
            for role, rules in raw["data_access"].items()
        }
        actions = {a: tuple(roles) for a, roles in raw["actions"].items()}
        approval = raw["approval"]
        policy = Policy(
            admin_operations=ops,
            data_access=access,
            actions=actions,
            purposes=dict(raw["purposes"]),
            totp_required=frozenset(raw["totp_required"]),
            break_glass_reasons=tuple(raw["break_glass_reasons"]),
            approval_operations=tuple(approval["operations"]),
            approvals_needed=int(approval["approvals_needed"]),
            approval_must_include=str(approval["must_include_role"]),
            defaults=dict(raw["defaults"]),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PolicyError(f"access policy is malformed ({exc.__class__.__name__})") from None
    _check(policy)
    return policy


def _check(p: Policy) -> None:
    for op, roles in p.admin_operations.items():
        if unknown := set(roles) - set(ROLES):
            raise PolicyError(f"operation {op} names unknown roles {sorted(unknown)}")
    for role, rules in p.data_access.items():
        if role not in DATA_ROLES:
            raise PolicyError(f"data access for {role!r}: only data roles may read images")
        for rule in rules:
            if rule.basis not in BASES:
                raise PolicyError(f"unknown basis {rule.basis!r}")
            if rule.level not in LEVELS and rule.level not in _DYNAMIC_LEVELS:
                raise PolicyError(f"unknown level {rule.level!r}")
            if rule.basis not in p.purposes:
                raise PolicyError(f"basis {rule.basis!r} has no purpose")
            if rule.basis != "project" and rule.level in LEVELS and builtin_levels()[rule.level].needs_project:
                raise PolicyError(f"data access for {role!r}: level {rule.level!r} needs a research "
                                  f"project, which basis {rule.basis!r} has not")
    for action, roles in p.actions.items():
        if action not in ACTIONS:
            raise PolicyError(f"unknown action {action!r}")
        if set(roles) & set(ADMIN_ROLES):
            raise PolicyError(f"action {action!r}: administrators never touch images")
        if unknown := set(roles) - set(DATA_ROLES):
            raise PolicyError(f"action {action!r} names unknown roles {sorted(unknown)}")
    if p.approvals_needed < 2:
        raise PolicyError("multi-party approval needs at least two approvers")
    if p.approval_must_include not in ADMIN_ROLES:
        raise PolicyError("the required approver role must be an administrator role")
    for name in ("project_level", "grant_level"):
        if p.defaults.get(name) not in LEVELS:
            raise PolicyError(f"default {name} is not a level")
    if builtin_levels()[p.defaults["grant_level"]].needs_project:
        raise PolicyError("default grant_level needs a research project: a grant cannot carry it")


def load(path: Path | None = None) -> Policy:
    """The policy at ``path``, or the one shipped with safepacs."""
    if path is None:
        text = (resources.files("safepacs.access") / "data" / "policy.json").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        raise PolicyError("access policy is not valid JSON") from None
    return parse(raw)
