"""Multi-party approval for bulk re-identification, exporting identified data and erasing a
study outside the retention policy (``erase_study``, target: its stored StudyInstanceUID).

A request is approved when the policy's number of different accounts (default two) approved
it, one of them a security administrator, none of them the requester; one refusal denies it.
Only status ``approved`` lets the operation proceed (``is_approved``), and only for a
limited time after the decision."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from safepacs.access.context import Context
from safepacs.access.errors import AccessError, Conflict, Forbidden, NotFound
from safepacs.access.guard import require
from safepacs.access.models import Approval, ApprovalVote
from safepacs.access.principal import Principal
from safepacs.audit.events import CREATE, EXECUTE, SECURITY_ALERT, UPDATE

TARGET = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class ApprovalView:
    id: int
    operation: str
    target: str
    requested_by: int
    status: str
    approvals: int
    refusals: int


def tally(policy_needed: int, must_role: str, requester: int,
          votes: list[tuple[int, str, bool]]) -> str:
    """Pure: the status given the votes (account, role, approve)."""
    votes = [v for v in votes if v[0] != requester]
    if any(not approve for _, _, approve in votes):
        return "denied"
    yes = {(acct, role) for acct, role, approve in votes if approve}
    if len({a for a, _ in yes}) >= policy_needed and any(role == must_role for _, role in yes):
        return "approved"
    return "pending"


class Approvals:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def request(self, who: Principal, operation: str, target: str) -> ApprovalView:
        route = "POST /api/approvals"
        require(self.ctx, who, "approval.request", route=route)
        if operation not in self.ctx.policy.approval_operations:
            raise AccessError("unknown operation")
        if not TARGET.match(target or ""):
            raise AccessError("malformed target")
        with Session(self.ctx.engine) as s, s.begin():
            row = Approval(operation=operation, target=target, requested_by=who.account_id,
                           status="pending", created_at=self.ctx.now())
            s.add(row)
            s.flush()
            result = self._view(s, row)
        self.ctx.emit(SECURITY_ALERT, CREATE, who=who, route=route, reason="approval requested",
                      detail={"approval": result.id, "operation": operation})
        return result

    def _view(self, s: Session, row: Approval) -> ApprovalView:
        votes = s.scalars(select(ApprovalVote.approve).where(ApprovalVote.approval_pk == row.pk)).all()
        return ApprovalView(row.pk, row.operation, row.target, row.requested_by, row.status,
                            sum(1 for v in votes if v), sum(1 for v in votes if not v))

    def vote(self, who: Principal, approval_id: int, approve: bool) -> ApprovalView:
        route = f"POST /api/approvals/{{id}}/{'approve' if approve else 'deny'}"
        require(self.ctx, who, "approval.vote", route=route)
        p = self.ctx.policy
        with Session(self.ctx.engine) as s:  # checked before the write transaction: the
            # alert's durable audit write needs the database, which that transaction holds
            requester = s.scalar(select(Approval.requested_by).where(Approval.pk == approval_id))
        if requester == who.account_id:
            self.ctx.emit(SECURITY_ALERT, EXECUTE, outcome=4, who=who, route=route,
                          reason="requester tried to approve their own request",
                          detail={"approval": approval_id})
            raise Forbidden("the requester cannot approve their own request")
        try:
            with Session(self.ctx.engine) as s, s.begin():
                row = s.get(Approval, approval_id)
                if row is None:
                    raise NotFound("no such approval request")
                if row.requested_by == who.account_id:
                    raise Forbidden("the requester cannot approve their own request")
                if row.status != "pending":
                    raise Conflict("this request is already decided")
                s.add(ApprovalVote(approval_pk=row.pk, account_pk=who.account_id, role=who.role,
                                   approve=approve, at=self.ctx.now()))
                s.flush()
                votes = [(v.account_pk, v.role, v.approve) for v in s.scalars(
                    select(ApprovalVote).where(ApprovalVote.approval_pk == row.pk))]
                row.status = tally(p.approvals_needed, p.approval_must_include, row.requested_by, votes)
                if row.status != "pending":
                    row.decided_at = self.ctx.now()
                result = self._view(s, row)
        except IntegrityError:
            raise Conflict("you already voted on this request") from None
        self.ctx.emit(SECURITY_ALERT, UPDATE, who=who, route=route,
                      reason=f"approval vote: {'approve' if approve else 'deny'}; status {result.status}",
                      detail={"approval": approval_id, "operation": result.operation})
        return result

    def status(self, who: Principal, approval_id: int) -> ApprovalView:
        """The requester, or anyone who may vote, may read a request's status."""
        with Session(self.ctx.engine) as s:
            row = s.get(Approval, approval_id)
            if row is None or (row.requested_by != who.account_id
                               and not self.ctx.policy.may(who.role, "approval.vote")):
                raise NotFound("no such approval request")
            return self._view(s, row)

    def pending(self, who: Principal) -> list[ApprovalView]:
        require(self.ctx, who, "approval.list", route="GET /api/approvals")
        with Session(self.ctx.engine) as s:
            rows = s.scalars(select(Approval).where(Approval.status == "pending").order_by(Approval.pk))
            return [self._view(s, r) for r in rows]

    def is_approved(self, operation: str, target: str, requester: int) -> bool:
        """Whether ``requester`` holds an approved request for exactly this operation and
        target, approved within the policy's validity window (default 72 h)."""
        hours = int(self.ctx.policy.defaults.get("approval_valid_hours", 72))
        since = self.ctx.now() - timedelta(hours=hours)
        with Session(self.ctx.engine) as s:
            return s.scalar(select(Approval.pk).where(
                Approval.operation == operation, Approval.target == target,
                Approval.requested_by == requester, Approval.status == "approved",
                Approval.decided_at > since).limit(1)) is not None
