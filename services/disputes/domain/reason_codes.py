"""The reason-code catalogue: why a customer disputes or deducts. A fixed list, so that reports
can group by reason and routing rules can rely on it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReasonCode:
    code: str
    description: str
    # UNSPECIFIED exists for deductions whose remittance gave no (known) reason; a person
    # opening a dispute always knows why, so the API does not accept it.
    selectable: bool = True


CATALOGUE: tuple[ReasonCode, ...] = (
    ReasonCode("PRICING", "Price charged differs from the agreed price"),
    ReasonCode("QUANTITY", "Quantity billed differs from the quantity received"),
    ReasonCode("DAMAGED", "Goods arrived damaged"),
    ReasonCode("NOT_RECEIVED", "Goods or services not received"),
    ReasonCode("DUPLICATE_BILLING", "The same goods or services were billed twice"),
    ReasonCode("PROMOTION", "Promotional allowance or trade discount taken"),
    ReasonCode("TAX", "Tax charged in error or at the wrong rate"),
    ReasonCode("OTHER", "Another reason, explained in the description"),
    ReasonCode("UNSPECIFIED", "Deduction taken without a stated reason; to be classified", selectable=False),
)

BY_CODE: dict[str, ReasonCode] = {r.code: r for r in CATALOGUE}
UNSPECIFIED = "UNSPECIFIED"


def is_selectable(code: str) -> bool:
    reason = BY_CODE.get(code)
    return reason is not None and reason.selectable


def deduction_reason_code(remittance_code: str | None) -> str:
    """The catalogue code for a short pay's remittance reason: known codes are kept, anything
    else (absent, blank or a customer's own code) is UNSPECIFIED until an analyst classifies it."""
    code = (remittance_code or "").strip().upper()
    return code if code in BY_CODE else UNSPECIFIED


# Card networks' dispute reasons as the processors report them (Stripe's `dispute_reason`) ->
# the catalogue; the rest (fraudulent, unrecognized, general, ...) is UNSPECIFIED until classified.
CHARGEBACK_REASONS: dict[str, str] = {
    "duplicate": "DUPLICATE_BILLING", "product_not_received": "NOT_RECEIVED", "product_unacceptable": "DAMAGED",
    "credit_not_processed": "PRICING",
}


def chargeback_reason_code(processor_reason: str | None) -> str:
    return CHARGEBACK_REASONS.get((processor_reason or "").strip().lower(), UNSPECIFIED)


# Who works a reason by default (routing); an analyst may reassign.
TEAMS: tuple[str, ...] = ("sales", "customer_service", "billing", "logistics")
DEFAULT_TEAM: dict[str, str] = {
    "PRICING": "sales", "PROMOTION": "sales", "QUANTITY": "logistics", "DAMAGED": "logistics",
    "NOT_RECEIVED": "logistics", "DUPLICATE_BILLING": "billing", "TAX": "billing", "OTHER": "customer_service",
    "UNSPECIFIED": "customer_service",
}


def team_for(reason_code: str) -> str:
    return DEFAULT_TEAM.get(reason_code, "customer_service")


def normalise_customer_code(code: str | None) -> str:
    return (code or "").strip().upper()


def mapped_reason_code(customer_code: str | None, mapping: dict[str, str]) -> str:
    """The catalogue code for a retailer's own deduction code: the customer's mapping first, then
    a code that is already the catalogue's, else UNSPECIFIED until an analyst classifies it."""
    code = normalise_customer_code(customer_code)
    if code in mapping:
        return mapping[code]
    return deduction_reason_code(code)


# Days a dispute of each reason may stay open before it is escalated (its due date).
DUE_DAYS: dict[str, int] = {
    "PRICING": 10, "QUANTITY": 14, "DAMAGED": 14, "NOT_RECEIVED": 14, "DUPLICATE_BILLING": 7, "PROMOTION": 30,
    "TAX": 10, "OTHER": 21, "UNSPECIFIED": 7,
}


def due_days(reason_code: str) -> int:
    return DUE_DAYS.get(reason_code, 21)
