"""The dispute analyst's queue filters (pure): what people type (reason, age in days, amount
between, owner) as disputes' /v1/disputes query, checked so bad input filters nothing rather
than failing."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Mapping

TEAMS = ("sales", "customer_service", "billing", "logistics")
WORK_STATUSES = ("in_review", "waiting_on_customer", "waiting_on_internal")
ATTACHMENT_KINDS = ("proof_of_delivery", "pricing_agreement", "purchase_order", "correspondence", "other")
FILTER_FIELDS = ("status", "kind", "reason_code", "owner", "team", "min_age", "max_age", "min_amount", "max_amount")


@dataclass(frozen=True)
class QueueFilters:
    values: dict[str, str]                          # as typed (kept in the form and the links)
    query: dict[str, str]                           # as disputes takes them
    errors: dict[str, str] = field(default_factory=dict)


def _days(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) <= 5 else None


def _amount(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() and 0 <= value < Decimal("1e15") else None


def queue_filters(params: Mapping[str, str | None], today: date) -> QueueFilters:
    values = {k: (params.get(k) or "").strip()[:120] for k in FILTER_FIELDS}
    values["status"] = values["status"] if values["status"] in ("open", "resolved") else "open"
    values["kind"] = values["kind"] if values["kind"] in ("dispute", "deduction") else ""
    values["team"] = values["team"] if values["team"] in TEAMS else ""
    query: dict[str, str] = {"status": values["status"]}
    errors: dict[str, str] = {}
    for key in ("kind", "reason_code", "owner", "team"):
        if values[key]:
            query[key] = values[key]
    # Age in days as of today: at least min_age days old = opened on or before today - min_age.
    for key, bound in (("min_age", "opened_to"), ("max_age", "opened_from")):
        if values[key]:
            days = _days(values[key])
            if days is None:
                errors[key] = "a whole number of days"
            else:
                query[bound] = (today - timedelta(days=days)).isoformat()
    for key in ("min_amount", "max_amount"):
        if values[key]:
            amount = _amount(values[key])
            if amount is None:
                errors[key] = "a positive decimal amount"
            else:
                query[key] = values[key]
    return QueueFilters(values=values, query=query, errors=errors)
