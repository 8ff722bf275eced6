"""Daily cash reconciliation: the receipts posted for a day against the bank's statement lines.

A line that posted a receipt (an import) is linked to it by payment id. A receipt posted some
other way (by API, from a lockbox keyed in) is paired with an unlinked line by bank reference,
else by an amount only one unlinked line has. What remains is a variance: a line without a
receipt (money the bank has and the ledger does not), a receipt without a line (money the ledger
shows and the bank does not), or a pair whose amounts differ."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence


@dataclass(frozen=True)
class StatementLine:
    import_id: str
    position: str
    amount: Decimal
    bank_reference: str | None
    payment_id: str | None


@dataclass(frozen=True)
class PostedReceipt:
    payment_id: str
    amount: Decimal
    reference: str | None


@dataclass(frozen=True)
class Variance:
    kind: str  # line_without_receipt | receipt_without_line | amount_difference
    amount: Decimal  # bank minus ledger
    payment_id: str | None = None
    import_id: str | None = None
    position: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Reconciliation:
    bank_total: Decimal
    posted_total: Decimal
    matched: int
    variances: tuple[Variance, ...]

    @property
    def difference(self) -> Decimal:
        return self.bank_total - self.posted_total


def reconcile(lines: Sequence[StatementLine], receipts: Sequence[PostedReceipt]) -> Reconciliation:
    by_id = {r.payment_id: r for r in receipts}
    unpaired_receipts = dict(by_id)
    variances: list[Variance] = []
    matched = 0
    unlinked: list[StatementLine] = []
    for line in lines:
        receipt = unpaired_receipts.pop(line.payment_id, None) if line.payment_id else None
        if receipt is None:
            unlinked.append(line)
            continue
        matched += 1
        if receipt.amount != line.amount:
            variances.append(_difference(line, receipt))
    still: list[StatementLine] = []
    for line in unlinked:
        receipt = next((r for r in unpaired_receipts.values()
                        if line.bank_reference and r.reference == line.bank_reference), None)
        if receipt is None:
            still.append(line)
            continue
        del unpaired_receipts[receipt.payment_id]
        matched += 1
        if receipt.amount != line.amount:
            variances.append(_difference(line, receipt))
    for line in still:
        same = [r for r in unpaired_receipts.values() if r.amount == line.amount]
        if len(same) == 1 and sum(1 for other in still if other.amount == line.amount) == 1:
            del unpaired_receipts[same[0].payment_id]
            matched += 1
            continue
        variances.append(Variance("line_without_receipt", line.amount, import_id=line.import_id,
                                  position=line.position, detail=f"bank reference {line.bank_reference or '-'}"))
    for receipt in unpaired_receipts.values():
        variances.append(Variance("receipt_without_line", -receipt.amount, payment_id=receipt.payment_id,
                                  detail=f"reference {receipt.reference or '-'}"))
    return Reconciliation(bank_total=sum((line.amount for line in lines), Decimal(0)),
                          posted_total=sum((r.amount for r in receipts), Decimal(0)), matched=matched,
                          variances=tuple(variances))


def _difference(line: StatementLine, receipt: PostedReceipt) -> Variance:
    return Variance("amount_difference", line.amount - receipt.amount, payment_id=receipt.payment_id,
                    import_id=line.import_id, position=line.position,
                    detail=f"bank {line.amount}, posted {receipt.amount}")
