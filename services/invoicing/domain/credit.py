"""Credit limits enforced at issue time, at the customer's level and at every ancestor's.

Pure rules, no I/O: the caller hands in each level's credit limit in force on the issue date
(None: no limit, unlimited) and its family's open exposure (its own open balance and every
descendant's) as the database holds it now, read under a lock on the levels' rows so that two
concurrent issues cannot both squeeze under one limit."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from shared.money import money_str

CUSTOMER = "customer"
PARENT = "parent"


@dataclass(frozen=True)
class LimitLevel:
    """One level of the check: `customer_id`'s limit against its family's exposure. level is
    CUSTOMER for the invoiced customer itself, PARENT for each account above it."""

    level: str
    customer_id: str
    credit_limit: Decimal | None
    exposure: Decimal


@dataclass(frozen=True)
class CreditBreach:
    """Issuing `amount` would take `customer_id`'s family exposure over its limit."""

    level: str
    customer_id: str
    credit_limit: Decimal
    exposure: Decimal
    amount: Decimal

    @property
    def available(self) -> Decimal:
        return self.credit_limit - self.exposure

    def describe(self, invoiced_customer: str, currency: str) -> str:
        whose = (f"customer {self.customer_id}'s" if self.level == CUSTOMER
                 else f"parent account {self.customer_id}'s (which pays for {invoiced_customer})")
        # At the currency's minor unit, as the problem's fields give them ("0.00", not "0", for no exposure).
        amount, exposure, limit, available = (money_str(value, currency) for value in (
            self.amount, self.exposure, self.credit_limit, self.available))
        return (f"issuing {amount} {currency} would take {whose} open exposure of {exposure} over its credit"
                f" limit of {limit} (available {available}); a credit override (approved_by, reason) lets it through")


@dataclass(frozen=True)
class CreditOverride:
    """Someone with the authority approved issuing above the limit, and why."""

    approved_by: str
    reason: str


def levels_for(chain: list[str], limits: dict[str, Decimal | None], exposures: dict[str, Decimal]) -> list[LimitLevel]:
    """chain: the invoiced customer first, then its parent, grandparent, ...; limits: each one's
    limit in force on the issue date; exposures: each one's family exposure (absent: none)."""
    zero = Decimal(0)
    return [LimitLevel(CUSTOMER if i == 0 else PARENT, c, limits.get(c), exposures.get(c, zero))
            for i, c in enumerate(chain)]


def breaches(levels: list[LimitLevel], amount: Decimal) -> list[CreditBreach]:
    """Every level whose exposure plus `amount` would exceed its limit, the customer's level
    first. A level without a limit never breaches; exposure exactly at the limit is allowed. An
    invoice taking exposure no higher (amount <= 0) never breaches, even above a lowered limit."""
    if amount <= 0:
        return []
    return [CreditBreach(lv.level, lv.customer_id, lv.credit_limit, lv.exposure, amount) for lv in levels
            if lv.credit_limit is not None and lv.exposure + amount > lv.credit_limit]


def check_override(override: CreditOverride | None) -> CreditOverride | None:
    """An override names who approved it and why (both non-blank), or it is no override."""
    if override is None:
        return None
    if not override.approved_by.strip():
        raise ValueError("credit_override.approved_by: name who approved issuing above the credit limit")
    if not override.reason.strip():
        raise ValueError("credit_override.reason: say why the credit limit may be exceeded")
    return CreditOverride(override.approved_by.strip(), override.reason.strip())
