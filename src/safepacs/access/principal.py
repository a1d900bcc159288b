"""The two values every layer passes around: who is asking, and what they were allowed."""

from __future__ import annotations

from dataclasses import dataclass

ADMIN_ROLES = ("system_admin", "security_admin", "security_auditor")
DATA_ROLES = ("physician", "radiologist", "researcher", "third_party", "patient", "service")
ROLES = ADMIN_ROLES + DATA_ROLES
CLINICAL_ROLES = ("physician", "radiologist")
LEVELS = ("identified", "pseudonymised", "anonymised", "deidentified")
ACTIONS = ("read", "query", "store", "export")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.  One account has exactly one role."""

    account_id: int
    username: str
    role: str
    session_id: str = ""  # JWT jti ("<session family>:<nonce>") or "token:<id>"
    address: str = ""
    via: str = "password"  # password | oidc | api-token | dimse

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES


@dataclass(frozen=True)
class Decision:
    """The answer of ``AccessControl.decide`` for one study.  ``reason`` never holds PHI."""

    allowed: bool
    level: str | None
    basis: str  # care | project | grant | patient | break_glass | service | none
    purpose: str  # treatment | research | third-party | own-record | emergency | integration
    project: str | None = None
    grant_id: int | None = None
    reason: str = ""
    patient: str = ""  # the study's patient pseudonym, when allowed (for the audit trail)


def refused(reason: str) -> Decision:
    return Decision(False, None, "none", "", None, None, reason)
