"""A customer's (a retailer's) own deduction codes mapped to the reason-code catalogue. Each
retailer writes its own ("S01 - SHORTAGE", "PRC", "77"); the mapping is versioned by its events."""
from __future__ import annotations

from datetime import date, datetime

from shared.aggregate import Aggregate
from shared.contracts import DeductionCodesMapped, ReasonCodeMapping
from services.disputes.domain.model import DisputeRuleViolation
from services.disputes.domain.reason_codes import BY_CODE, is_selectable, normalise_customer_code


class CustomerDeductionCodes(Aggregate):
    stream_type = "deduction-codes"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.mapping: dict[str, str] = {}

    def set_mapping(self, *, mappings: list[tuple[str, str]], on: date, by: str, at: datetime) -> None:
        """Replace the customer's mapping. Customer codes are compared upper-cased and trimmed."""
        result: dict[str, str] = {}
        for i, (customer_code, reason_code) in enumerate(mappings):
            code = normalise_customer_code(customer_code)
            if not code:
                raise DisputeRuleViolation("a customer code cannot be blank", f"mappings.{i}.customer_reason_code")
            if code in result:
                raise DisputeRuleViolation(f"customer code {code} is mapped twice", f"mappings.{i}.customer_reason_code")
            if not is_selectable(reason_code):
                known = ", ".join(c for c in BY_CODE if is_selectable(c))
                raise DisputeRuleViolation(f"reason code {reason_code!r} is not one of {known}",
                                           f"mappings.{i}.reason_code")
            result[code] = reason_code
        if result == self.mapping and self.exists:
            return
        self.trigger(DeductionCodesMapped(
            customer_id=self.id, mapped_on=on, mapped_by=by,
            mappings=[ReasonCodeMapping(customer_reason_code=k, reason_code=v) for k, v in sorted(result.items())]), at)

    def when_DeductionCodesMapped(self, e: DeductionCodesMapped) -> None:
        self.mapping = {m.customer_reason_code: m.reason_code for m in e.mappings}
