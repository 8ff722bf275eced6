"""Returns credit each returned line's share of its tax. Pure, no I/O.

Tax is never recomputed: each line's tax is the one the ERP gave for it (InvoiceLine.tax_amount),
or, when the ERP gave the invoice's taxes without splitting them by line, the invoice's tax
total split over its lines in proportion to their amounts (shared.money.allocate: the parts sum
to the total exactly). A return credits tax × returned quantity / invoiced quantity, rounded half
up to the currency's minor unit, and the return that takes the line's last unit credits what is
left of its tax, so all returns of a line together credit exactly its tax, never more."""
from __future__ import annotations

from decimal import Decimal

from shared.money import ZERO, allocate, quantize


def line_taxes(line_amounts: list[Decimal], line_tax_amounts: list[Decimal | None], invoice_tax_total: Decimal,
               currency: str) -> list[Decimal]:
    """Each line's tax. line_tax_amounts: what the ERP gave per line (None: not given). When any
    line has one, those are the lines' taxes (a line without one has none); otherwise the
    invoice's tax total is split over the lines by amount (equally when every line is zero)."""
    if any(t is not None for t in line_tax_amounts):
        return [t if t is not None else ZERO for t in line_tax_amounts]
    if invoice_tax_total == 0 or not line_amounts:
        return [ZERO for _ in line_amounts]
    weights = line_amounts if sum(line_amounts, ZERO) > 0 else [Decimal(1)] * len(line_amounts)
    return allocate(invoice_tax_total, weights, currency)


def returned_tax(*, line_tax: Decimal, invoiced_quantity: Decimal, returned_before: Decimal, quantity: Decimal,
                 tax_credited_before: Decimal, currency: str) -> Decimal:
    """The tax a return of `quantity` credits on a line (returned_before and tax_credited_before:
    what earlier returns of the line took)."""
    left = line_tax - tax_credited_before
    if returned_before + quantity >= invoiced_quantity:
        return left
    return min(quantize(line_tax * quantity / invoiced_quantity, currency), left)
