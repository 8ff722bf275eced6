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
