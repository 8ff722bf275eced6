"""Write-off approval and escalation advice. Pure."""
from __future__ import annotations

from decimal import Decimal
from typing import Mapping


def approval_refusal(*, requested_by: str, approver: str, approver_role: str | None, amount: Decimal,
                     limits: Mapping[str, Decimal | None]) -> str | None:
    """Why this approver may not approve this write-off, or None. limits maps a role to the
    largest amount it may approve (None: no limit); a role not in the map may approve nothing."""
    if approver == requested_by:
        return "the approver cannot be the requester"
    if approver_role is None:
        return f"{approver} is not a registered approver"
    if approver_role not in limits:
        return f"role {approver_role} may not approve write-offs"
    limit = limits[approver_role]
    if limit is not None and amount > limit:
        return f"{amount} exceeds the {approver_role} limit of {limit}"
    return None


def recommended_action(*, oldest_days_past_due: int, risk_score: int | None, broken_commitments: int,
                       on_active_plan: bool) -> str:
    """What an escalation recommends to the manager."""
    if on_active_plan:
        return "payment_plan"
    if oldest_days_past_due >= 120 or (broken_commitments >= 2 and oldest_days_past_due >= 90):
        return "legal"
    if (risk_score or 0) >= 60:
        return "credit_hold"
    if broken_commitments == 0:
        return "payment_plan"
    return "call_manager"
