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
