"""Adjustment reason codes: why an AR team moves an invoice's balance outside a credit memo.
A fixed catalogue, so reports group by reason; each code says which directions it allows."""
from __future__ import annotations

from dataclasses import dataclass

DEBIT, CREDIT = "debit", "credit"
DIRECTIONS = (DEBIT, CREDIT)


@dataclass(frozen=True)
class AdjustmentReason:
    code: str
    description: str
    directions: tuple[str, ...] = DIRECTIONS


ADJUSTMENT_REASONS: tuple[AdjustmentReason, ...] = (
    AdjustmentReason("PRICING_CORRECTION", "Price billed corrected to the agreed price"),
    AdjustmentReason("QUANTITY_CORRECTION", "Quantity billed corrected to the quantity shipped"),
    AdjustmentReason("FREIGHT", "Freight or handling charged or waived"),
    AdjustmentReason("TAX_CORRECTION", "Tax recomputed at the right rate"),
    AdjustmentReason("LATE_FEE", "Late-payment fee charged under the terms", (DEBIT,)),
    AdjustmentReason("GOODWILL", "Goodwill concession to the customer", (CREDIT,)),
    AdjustmentReason("BILLING_ERROR", "Another billing error corrected"),
    AdjustmentReason("OTHER", "Another reason, explained in the note"),
)

BY_CODE: dict[str, AdjustmentReason] = {r.code: r for r in ADJUSTMENT_REASONS}
