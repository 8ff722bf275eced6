"""What a card processor's payout report says, in one shape for every processor, and how a
payout adds up.

A processor (Stripe, Adyen) collects card charges for us, takes its fees, refunds and
chargebacks out of the balance, and pays the rest into our bank account in a payout. The report
lists each payout's transactions. Ledgerline posts each charge as a receipt *gross* of fees (the
customer paid the whole invoice), records the fees as adjustments of their own, and expects one
bank credit per payout of exactly

    net = charges - fees - refunds - chargebacks (+ chargeback reversals + other adjustments)

Every amount here is exact in the payout's currency; `gross` and `fee` are as the processor
states them, signed as they move our balance (a refund's gross is negative, a fee positive)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from services.cash_application.domain.receipts import FileRejected

ZERO = Decimal(0)

# What a transaction is, whatever the processor calls it.
CHARGE = "charge"  # a card payment: a receipt, gross
REFUND = "refund"  # money given back to the card holder
CHARGEBACK = "chargeback"  # the card holder disputed the charge; the processor took the money back
CHARGEBACK_REVERSAL = "chargeback_reversal"  # a chargeback won back
FEE = "fee"  # a fee of its own (not on a charge): monthly, dispute, account fees
OTHER = "other"  # any other balance movement (adjustments, transfers, reserves): counted, not posted
KINDS = (CHARGE, REFUND, CHARGEBACK, CHARGEBACK_REVERSAL, FEE, OTHER)


@dataclass(frozen=True)
class CardTransaction:
    position: str  # "line 7": where in the file
    kind: str
    transaction_id: str  # the processor's id of this balance movement
    charge_id: str | None  # the charge it belongs to (the charge's own id for a charge)
    gross: Decimal  # signed: + money in (charges, reversals), - money out (refunds, chargebacks)
    fee: Decimal  # what the processor kept for this transaction (negative when it gave a fee back)
    created: date
    invoice_number: str | None = None  # the invoice the ERP named on the charge (metadata)
    customer_hint: str | None = None
    payer_name: str | None = None
    reason: str | None = None  # a chargeback's reason as the processor gives it
    description: str = ""

    @property
    def net(self) -> Decimal:
        return self.gross - self.fee


@dataclass(frozen=True)
class CardPayout:
    processor: str
    payout_id: str
    currency: str
    arrival_date: date
    transactions: tuple[CardTransaction, ...]
    declared_amount: Decimal | None = None  # the payout row's amount, when the report has one
    position: str = ""

    def total(self, kind: str) -> Decimal:
        return sum((t.gross for t in self.transactions if t.kind == kind), ZERO)

    @property
    def fees(self) -> Decimal:
        return sum((t.fee for t in self.transactions), ZERO)

    @property
    def amount(self) -> Decimal:
        """What the bank credit must be: the sum of every transaction's net."""
        return sum((t.net for t in self.transactions), ZERO)


@dataclass(frozen=True)
class ParsedCardReport:
    processor: str
    payouts: tuple[CardPayout, ...] = field(default_factory=tuple)
    rows: int = 0  # data rows in the file, counted apart from the reader


def check_payouts(report: ParsedCardReport) -> ParsedCardReport:
    """Every data row read into a payout (or its payout row), and every payout that states its
    amount adds up to it: a report that does not add up is refused, never posted in part."""
    read = sum(len(p.transactions) + (1 if p.declared_amount is not None else 0) for p in report.payouts)
    if read != report.rows:
        raise FileRejected("file", f"holds {report.rows} data rows but {read} were read into payouts;"
                                   " nothing was posted")
    for payout in report.payouts:
        if payout.declared_amount is not None and payout.declared_amount != payout.amount:
            raise FileRejected(payout.position or "file",
                               f"payout {payout.payout_id} is {payout.declared_amount} but its transactions"
                               f" net to {payout.amount} (charges {payout.total(CHARGE)}, fees {payout.fees},"
                               f" refunds {payout.total(REFUND)}, chargebacks {payout.total(CHARGEBACK)})")
        if payout.amount <= 0:
            raise FileRejected(payout.position or "file",
                               f"payout {payout.payout_id} nets to {payout.amount}: a payout is a credit to the bank")
    return report


def payout_breakdown(payout: CardPayout) -> dict[str, Decimal]:
    """The payout's composition, as the import answers it."""
    return {"charges": payout.total(CHARGE), "fees": payout.fees, "refunds": -payout.total(REFUND),
            "chargebacks": -payout.total(CHARGEBACK), "chargeback_reversals": payout.total(CHARGEBACK_REVERSAL),
            "standalone_fees": -payout.total(FEE), "other": payout.total(OTHER), "net": payout.amount}


def mentions_payout(text: str, payout_id: str, processor: str) -> bool:
    """Does a bank line's text (reference, payer name, narrative) point at this payout? Banks print
    the processor's name (STRIPE, ADYEN) and often the payout id or batch number."""
    haystack = text.upper()
    return payout_id.upper() in haystack or processor.upper() in haystack
