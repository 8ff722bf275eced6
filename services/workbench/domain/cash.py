"""The cash applier's selection (pure): which invoices get how much of a payment, and the running
totals of what is selected and what remains, in exact decimals."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Mapping

from services.workbench.domain.money import parse_amount


@dataclass(frozen=True)
class Selection:
    applications: list[dict[str, str]]   # [{invoice_id, amount}] as the API takes them
    selected: str
    remaining: str
    over: bool                           # more selected than the payment's unapplied cash
    errors: dict[str, str]               # invoice id -> why its amount is not a positive decimal


def selection(form: Mapping[str, object], invoice_ids: list[str], unapplied: str) -> Selection:
    """Form fields `pick` (checked invoice ids) and `amount_<invoice id>`."""
    picked = set(form.getlist("pick")) if hasattr(form, "getlist") else set(form.get("pick") or [])  # type: ignore[union-attr]
    apps, errors, total = [], {}, Decimal(0)
    for invoice_id in invoice_ids:
        if invoice_id not in picked:
            continue
        raw = str(form.get(f"amount_{invoice_id}") or "").strip()
        try:
            amount = parse_amount(raw)
        except ValueError:
            amount = None
        if amount is None or amount <= 0:
            errors[invoice_id] = "enter a positive amount"
            continue
        apps.append({"invoice_id": invoice_id, "amount": raw})
        total += amount
    left = (parse_amount(unapplied) or Decimal(0)) - total
    return Selection(applications=apps, selected=format(total, "f"), remaining=format(left, "f"), over=left < 0,
                     errors=errors)


# The unapplied-cash queue's columns people sort by, and how each maps onto cash application's
# /v1/unapplied-cash `sort` (age is the value date the other way round).
QUEUE_SORTS = ("received", "amount", "age", "customer", "score")
_DEFAULT_DESCENDING = {"amount", "age", "score"}


@dataclass(frozen=True)
class QueueOrder:
    sort: str
    descending: bool

    @property
    def api_sort(self) -> str:
        return "value_date" if self.sort == "age" else self.sort

    @property
    def api_order(self) -> str:
        descending = not self.descending if self.sort == "age" else self.descending
        return "desc" if descending else "asc"

    def toggled(self, column: str) -> str:
        """The order a click on `column` asks for: the other way when it is the current sort."""
        if column == self.sort:
            return "asc" if self.descending else "desc"
        return "desc" if column in _DEFAULT_DESCENDING else "asc"


def queue_order(sort: str | None, order: str | None) -> QueueOrder:
    column = sort if sort in QUEUE_SORTS else "received"
    descending = (order == "desc") if order in ("asc", "desc") else column in _DEFAULT_DESCENDING
    return QueueOrder(column, descending)


def active_applications(payment: Mapping[str, object]) -> list[dict]:
    """The payment's applications in force (not reversed)."""
    return [a for a in payment.get("applications") or [] if not a.get("reversed_on")]  # type: ignore[union-attr]


def reopened_balances(payment: Mapping[str, object], items: list[dict]) -> dict[str, str]:
    """What each invoice's open balance would be once the payment's applications are reversed
    (a re-application may use it): its open balance plus what this payment applies to it."""
    back: dict[str, Decimal] = {}
    for a in active_applications(payment):
        back[a["invoice_id"]] = back.get(a["invoice_id"], Decimal(0)) + Decimal(a["amount"])
    return {i["invoice_id"]: format(Decimal(i["open_balance"]) + back.get(i["invoice_id"], Decimal(0)), "f")
            for i in items}


def applied_total(payment: Mapping[str, object], application_ids: list[str] | None = None) -> str:
    """The sum of the chosen applications in force (all when none chosen), exactly."""
    chosen = [a for a in active_applications(payment) if not application_ids or a["application_id"] in application_ids]
    return format(sum((Decimal(a["amount"]) for a in chosen), Decimal(0)), "f")
