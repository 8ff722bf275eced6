"""Amounts read from files: exact in the currency and small enough for the ledger to hold.

Every parser reads its amounts through file_amount, so an amount no currency can hold (1E+26,
a 30-digit balance) is a rejection naming the line, never an overflow further down."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from shared.money import MoneyError, exact_amount, parse_amount
from services.cash_application.domain.receipts import FileRejected

# Amounts are stored as numeric(20, 4): at most 16 digits before the decimal point.
LEDGER_LIMIT = Decimal("1E16")


def file_amount(value: str | Decimal, currency: str, where: str) -> Decimal:
    shown = value if isinstance(value, str) else format(value, "f")
    try:
        parsed = parse_amount(value.strip() if isinstance(value, str) else value)
    except MoneyError as exc:
        raise FileRejected(where, f"{shown!r} is not an amount: {exc}") from exc
    if abs(parsed) >= LEDGER_LIMIT:
        raise FileRejected(where, f"{shown!r} is larger than any amount the ledger holds"
                                  " (at most 16 digits before the decimal point)")
    try:
        return exact_amount(parsed, currency)
    except (MoneyError, InvalidOperation) as exc:
        raise FileRejected(where, f"{shown!r} is not an amount in {currency}: {exc}") from exc
