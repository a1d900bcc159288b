"""``AccessControl``: the access core's one entry point (see /contract: authenticate, decide,
visible_studies, is_store_allowed), with the administrative desks hung off it:
``accounts`` (system administrator), ``grants``, ``break_glass`` review and ``approvals``
(security administrator), and ``auth`` (login, refresh, logout, password, TOTP).

Decisions are made on the server's own records: the study and its patient are looked up
from the stored (de-identified) StudyInstanceUID; nothing the client says about a study is
trusted.  Administrators are refused every image, always."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, Engine, bindparam, false, select
from sqlalchemy.orm import Session

from safepacs.access import passwords, rules
from safepacs.access.accounts import Accounts
from safepacs.access.approvals import Approvals
from safepacs.access.auth import Auth, LoginResult
from safepacs.access.breakglass import BreakGlassDesk
from safepacs.access.context import Clock, Context, utc_now
from safepacs.access.grants import Grants
from safepacs.access.keyfile import load_keys
from safepacs.access.levels import LevelDesk, LevelRegistry, exposes_identity
from safepacs.access.models import Account, BreakGlass, CareRelationship, Grant, Project
from safepacs.access.oidc import OidcConfig, OidcLogin
from safepacs.access.policy import Policy, load
from safepacs.access.principal import ACTIONS, Decision, Principal, refused
from safepacs.access.profile import PatientTokens, Profiles, pick
from safepacs.audit.events import (
    CREATE,
    EXECUTE,
    EXPORT,
    IMPORT,
    INSTANCES_ACCESSED,
    MINOR_FAILURE,
    QUERY,
    READ,
    USER_AUTHENTICATION,
    AuditSink,
    LogSink,
)
from safepacs.index.models import Patient, Study

if TYPE_CHECKING:
    from safepacs.store.service_keys import SecretSource

log = logging.getLogger(__name__)

#: the table and column holding the end of each basis, and the detail key the anomaly rules
#: read it under ("after_end"): care (and break-glass) end like a discharge, the rest like a grant
_ENDS = {"care": (CareRelationship, "ends_at", "care_ends"),
         "break_glass": (BreakGlass, "ends_at", "care_ends"),
         "grant": (Grant, "ends_at", "grant_ends"), "service": (Grant, "ends_at", "grant_ends"),
         "project": (Project, "expires_at", "grant_ends")}

_ACTIVE_TTL = 2.0
_STUDY_PATIENT = (select(Study.pk, Patient.patient_id).join(Patient, Patient.pk == Study.patient_pk)
                  .where(Study.study_uid == bindparam("b_uid")))
_ACCOUNT_STATE = select(Account.disabled, Account.role).where(Account.pk == bindparam("b_pk"))
_EVENTS = {"read": (INSTANCES_ACCESSED, READ), "query": (QUERY, EXECUTE),
           "store": (IMPORT, CREATE), "export": (EXPORT, READ)}


class AccessControl:
    def __init__(self, engine: Engine, keys_dir: Path | SecretSource, *, audit: AuditSink | None = None,
                 clock: Clock | None = None, policy: Policy | None = None,
                 oidc: OidcConfig | None = None, vip: Iterable[str] = (),
                 enrich: Callable[[str], PatientTokens] | None = None) -> None:
        self.ctx = Context(engine, policy or load(), load_keys(keys_dir), audit or LogSink(),
                           clock or utc_now)
        #: VIP-flagged patient pseudonyms (settings ``vip_patients``): their reads say so
        self.vip: frozenset[str] = frozenset(vip)
        self._active_until: dict[tuple[int, str], float] = {}
        self.ctx.listeners.append(self._forget_active)
        #: patient pseudonym -> tokens of the patient's family name / address (the archive
        #: supplies it from its identity cache; see ``profile.PatientFamilies``)
        self.enrich = enrich
        self.profiles = Profiles(self.ctx)
        self.policy = self.ctx.policy
        self.auth = Auth(self.ctx)
        self.accounts = Accounts(self.ctx, self.auth)
        self.grants = Grants(self.ctx)
        self.break_glass = BreakGlassDesk(self.ctx, self.auth)
        self.approvals = Approvals(self.ctx)
        #: site-defined access levels (security administrator), beside the built-in ones
        self.levels = LevelDesk(self.ctx)
        #: which levels re-key per project, as decisions see them (re-read after a change)
        self._registry = LevelRegistry(engine)
        self.ctx.listeners.append(self._registry.forget)
        self.oidc = OidcLogin(oidc, self.ctx, self.auth) if oidc is not None else None

    # --- authentication -----------------------------------------------------------------
    def authenticate(self, token: str, *, address: str = "") -> Principal | None:
        """The caller of a JWT access token or an ``sp_`` API token; None if invalid."""
        return self.auth.authenticate(token, address=address)

    def login(self, username: str, password: str, code: str = "", *, address: str = "") -> LoginResult:
        return self.auth.login(username, password, code, address=address)

    def refresh(self, refresh_token: str, *, address: str = "") -> LoginResult:
        return self.auth.refresh(refresh_token, address=address)

    def logout(self, who: Principal) -> None:
        self.auth.logout(who)

    def authenticate_dimse(self, *, username: str = "", password: str = "", token: str = "",
                           address: str = "") -> Principal | None:
        """DICOM User Identity Negotiation: a token (JWT or API token) or, for roles without a
        mandatory second factor, username and password."""
        if token:
            who = self.auth.authenticate(token, address=address)
            return None if who is None else replace(who, via="dimse")
        with Session(self.ctx.engine) as s:
            acct = s.scalar(select(Account).where(Account.username == username)) if username else None
        ok = passwords.verify_password(acct.password_hash if acct else None, password)
        now = self.ctx.now()
        if (acct is None or not ok or acct.disabled or acct.must_change_password
                or self.policy.needs_totp(acct.role)
                or (acct.locked_until is not None and acct.locked_until > now)):
            self.ctx.emit(USER_AUTHENTICATION, EXECUTE, outcome=MINOR_FAILURE, user="unknown",
                          address=address, route="dimse:user-identity",
                          reason="DIMSE user identity refused")
            return None
        return Principal(acct.pk, acct.username, acct.role, "", address, "dimse")

    def principal_for(self, username: str, *, address: str = "", via: str = "dimse") -> Principal | None:
        """The principal of an account bound to a DICOM caller (AE title + address in the
        site's settings): only ``service`` accounts, and only active ones, may be bound."""
        with Session(self.ctx.engine) as s:
            acct = s.scalar(select(Account).where(Account.username == username))
        if acct is None or acct.disabled or acct.role != "service":
            self.ctx.emit(USER_AUTHENTICATION, EXECUTE, outcome=MINOR_FAILURE, user="unknown",
                          address=address, route="dimse:bound-account",
                          reason="AE title bound to a missing, disabled or non-service account")
            return None
        return Principal(acct.pk, acct.username, acct.role, "", address, via)

    # --- authorisation ------------------------------------------------------------------
    def _forget_active(self, *, account: int | None = None, **_: object) -> None:
        if account is None:
            return
        for key in [k for k in self._active_until if k[0] == account]:
            self._active_until.pop(key, None)

    def _active(self, s: Session, who: Principal) -> bool:
        """The account exists, is enabled and still has the token's role.  A yes is
        remembered for ``_ACTIVE_TTL`` seconds (it is asked on every request); disabling an
        account takes effect within that time, as within the API's token cache."""
        key = (who.account_id, who.role)
        now = time.monotonic()
        if self._active_until.get(key, 0.0) > now:
            return True
        acct = s.execute(_ACCOUNT_STATE, {"b_pk": who.account_id}).first()
        ok = acct is not None and not acct.disabled and acct.role == who.role
        if ok:
            if len(self._active_until) > 4096:
                self._active_until.clear()
            self._active_until[key] = now + _ACTIVE_TTL
        return ok

    def decide(self, principal: Principal, study_uid: str, *, action: str = "read",
               audit: bool = True, patient: str | None = None) -> Decision:
        """May ``principal`` do ``action`` on the stored study ``study_uid`` now, at which level
        and on which basis?  Every answer is audited, except with ``audit=False``: the archive
        uses that to shape rows of a query the caller was already audited for.  ``patient``:
        the study's patient as the caller just read it from the index together with the study
        (a retrieve's own lookup), which saves looking it up again; never a request's value."""
        decision, ends = self._decide(principal, study_uid, action, patient)
        if not audit:
            return decision
        event_id, code = _EVENTS.get(action, (INSTANCES_ACCESSED, READ))
        detail: dict = {"basis": decision.basis, **({"grant": decision.grant_id} if decision.grant_id else {})}
        if decision.allowed and decision.patient:
            detail.update(self._anomaly_inputs(principal, decision.patient, decision.basis, ends))
        self.ctx.emit(event_id, code, outcome=0 if decision.allowed else MINOR_FAILURE,
                      who=principal, route=f"decide:{action}", study_uid=_safe_uid(study_uid),
                      patient=decision.patient,
                      level=decision.level or "", reason=decision.reason or decision.basis,
                      purpose=(f"research:{decision.project}" if decision.project else decision.purpose),
                      detail=detail)
        return decision

    def _anomaly_inputs(self, who: Principal, patient: str, basis: str, ends: datetime | None) -> dict:
        """What the anomaly rules compare (audit ``anomaly_rules.json``): the reader's
        profile tokens, the patient's (same keyed hash), the VIP flag and the end of the basis.
        Tokens only; no name or address is ever in an event."""
        out: dict = {}
        profile = self.profiles.get(who.account_id)
        if profile.own_patient:
            out["reader_patient"] = profile.own_patient
        if profile.department:
            out["department"] = profile.department  # the patient's access log shows it
        if patient in self.vip:
            out["vip"] = True
        if ends is not None:
            out[_ENDS[basis][2]] = ends.replace(tzinfo=UTC).isoformat(timespec="seconds")
        tokens: PatientTokens = {}
        # the patient's tokens are compared only with the reader's: a reader without a family
        # name or address on file (a service account) has nothing to compare them with
        if self.enrich is not None and (profile.family is not None or profile.address is not None):
            try:
                tokens = self.enrich(patient)
            except Exception as exc:  # noqa: BLE001 - the decision stands; the event says so
                log.error("patient profile lookup failed with %s", type(exc).__name__)
                out["enrich"] = "failed"
        for side, reader in (("family", profile.family), ("address", profile.address)):
            if reader is not None:
                out[f"reader_{side}"] = reader
            if (token := pick(reader, tokens.get(f"patient_{side}", ()))) is not None:
                out[f"patient_{side}"] = token
        return out

    def _decide(self, who: Principal, study_uid: str, action: str,
                patient: str | None = None) -> tuple[Decision, datetime | None]:
        """The decision, and when the basis that allowed it ends (None if it has no end)."""
        if action not in ACTIONS:
            return refused("unknown action"), None
        if who.is_admin:
            return refused("administrators have no access to images"), None
        if not self.policy.may_act(who.role, action):
            return refused(f"role may not {action}"), None
        now = self.ctx.now()
        ends = None
        keyed = self._registry.project_keyed()  # before the connection: a refresh takes its own
        with self.ctx.engine.connect() as s:  # Core: reads only, on every request
            if not self._active(s, who):
                return refused("account disabled or changed"), None
            if action == "store":
                return Decision(True, "deidentified", "service" if who.role == "service" else "care",
                                "integration" if who.role == "service" else "treatment", None, None, ""), None
            if not _safe_uid(study_uid):
                return refused("no such study"), None
            if patient is None:  # the caller did not read it with the study: look it up
                found = s.execute(_STUDY_PATIENT, {"b_uid": study_uid}).first()
                if found is None:
                    return refused("no such study"), None
                patient = found.patient_id
            decision = None
            unkeyed = ""  # a level found on a grant that only a project may carry
            for rule in self.policy.rules(who.role):
                query = rules.lookup_prepared(rule.basis, who.account_id, now, study_uid, patient)
                for ident, level, project, until in s.execute(*query).all() if query is not None else ():
                    level = level if rule.level in ("project", "grant") else rule.level
                    if project is None and level in keyed:
                        # granted outside a project (by an older version): no project key to
                        # re-key with, and never a lower-protection copy instead
                        unkeyed = level
                        continue
                    decision = Decision(
                        True, level, rule.basis, self.policy.purposes[rule.basis], project,
                        ident if rule.basis in ("grant", "service") else None, "", patient)
                    ends = until
                    break
                if decision is not None:
                    break
        if decision is None and unkeyed:
            return refused(f"the grant's level {unkeyed!r} needs a research project; "
                           "a grant cannot carry it"), None
        if decision is None:
            return refused("no care relationship, project, grant or emergency access covers this study"), None
        if action == "export" and exposes_identity(self.ctx.engine, decision.level) and not self.approvals.is_approved(
                "export_identified", study_uid, who.account_id):
            return refused("exporting identified data needs an approved request"), None
        return decision, ends

    def visible_studies(self, principal: Principal) -> ColumnElement[bool]:
        """SQL over ``Study`` true only for the studies ``principal`` may read now."""
        if principal.is_admin or not self.policy.may_act(principal.role, "read"):
            return false()
        with Session(self.ctx.engine) as s:
            if not self._active(s, principal):
                return false()
        now = self.ctx.now()
        keyed = self._registry.project_keyed()  # as decide: only where the row names the level
        return rules.any_of([rules.condition(r.basis, principal.account_id, now,
                                             project_keyed=keyed if r.level in ("project", "grant") else ())
                             for r in self.policy.rules(principal.role)])

    def is_store_allowed(self, principal: Principal) -> bool:
        if principal.is_admin or not self.policy.may_act(principal.role, "store"):
            return False
        with Session(self.ctx.engine) as s:
            return self._active(s, principal)


def _safe_uid(uid: str) -> str:
    """The UID if it looks like one (de-identified UIDs are what callers pass), else ""."""
    return uid if uid and len(uid) <= 64 and all(c.isdigit() or c == "." for c in uid) else ""
