"""One check before every administrative operation: the role may do it (policy), and the
account is not acting on itself.  Refusals are audited before they are raised."""

from __future__ import annotations

from safepacs.access.context import Context
from safepacs.access.errors import Forbidden
from safepacs.access.principal import Principal
from safepacs.audit.events import EXECUTE, MINOR_FAILURE, SECURITY_ALERT


def require(ctx: Context, who: Principal, operation: str, *, target_account: int | None = None,
            route: str = "") -> None:
    if not ctx.policy.may(who.role, operation):
        ctx.emit(SECURITY_ALERT, EXECUTE, outcome=MINOR_FAILURE, who=who, route=route,
                 reason=f"role may not perform {operation}", detail={"operation": operation})
        raise Forbidden(f"your role may not perform {operation}")
    if target_account is not None and target_account == who.account_id:
        ctx.emit(SECURITY_ALERT, EXECUTE, outcome=MINOR_FAILURE, who=who, route=route,
                 reason=f"{operation} on one's own account", detail={"operation": operation})
        raise Forbidden("no account may change its own role, grants or access")
