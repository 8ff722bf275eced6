"""What a bank or remittance file says about money received, in one shape for every format.

A parser turns BAI2, camt.053/054, MT940, CSV or EDI 820 into BankStatements of BankLines; the
matching engine and the import handler know nothing of the formats. Amounts are exact Decimals in
the statement's currency (never floats); a line's `amount` is positive and `direction` says
whether the bank credited (a receipt) or debited (a return, a fee) the account.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal


class FileRejected(ValueError):
    """A malformed or inconsistent file: `where` names the line or element, `reason` why."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason

    def __reduce__(self):  # crosses the parse process pool's boundary intact
        return (FileRejected, (self.where, self.reason))


@dataclass(frozen=True)
class RemittanceItem:
    """One document a remittance names: an invoice reference and what the payer says about it."""

    reference: str
    paid_amount: Decimal | None = None  # what the payer pays on it
    invoice_amount: Decimal | None = None  # the document's amount as the payer sees it
    adjustment_amount: Decimal | None = None  # the deduction the payer took (positive = paid less)
    reason_code: str | None = None  # the payer's adjustment reason (EDI ADX / RMR, camt AdjstmntAmtAndRsn)


@dataclass(frozen=True)
class BankLine:
    """One statement entry: a receipt (credit) or a debit such as a returned item."""

    position: str  # "line 17", "Ntry[3]": where in the file, for messages and reconciliation
    amount: Decimal
    direction: str  # credit | debit
    value_date: date
    bank_reference: str | None = None
    payer_name: str | None = None
    payer_account: str | None = None
    customer_hint: str | None = None  # a customer id or account number the remittance states
    text: str = ""  # unstructured remittance / narrative
    remittance: tuple[RemittanceItem, ...] = ()
    method: str = "other"
    return_code: str | None = None  # set on a returned / reversed item (NSF, R01, camt RvslInd, ...)
    returned_reference: str | None = None  # the original receipt's reference, when the bank gives it
    # Where the value date came from when the entry does not carry its own (camt.054 entries with
    # neither ValDt nor BookgDt take the notification's or the message's creation date).
    value_date_source: str | None = None

    @property
    def is_receipt(self) -> bool:
        return self.direction == "credit" and self.return_code is None and self.amount > 0

    @property
    def is_return(self) -> bool:
        return self.return_code is not None


@dataclass(frozen=True)
class BankStatement:
    file_format: str
    account: str | None
    statement_id: str | None
    statement_date: date
    currency: str
    lines: tuple[BankLine, ...]
    opening_balance: Decimal | None = None
    closing_balance: Decimal | None = None
    # The file's entry records this statement consumed (a :61:, a 16 record, an Ntry, an ST..SE,
    # a CSV row). One record may give several lines (a camt batch entry), and a record that is not
    # a booking (a camt entry with status INFO or PDNG) gives none: it is counted in entries_not_booked.
    entry_records: int = 0
    entries_not_booked: int = 0

    @property
    def total_credits(self) -> Decimal:
        return sum((line.amount for line in self.lines if line.direction == "credit"), Decimal(0))

    @property
    def total_debits(self) -> Decimal:
        return sum((line.amount for line in self.lines if line.direction == "debit"), Decimal(0))

    @property
    def identity(self) -> str | None:
        """Account + statement id + date: the same statement sent again in another file."""
        if not self.statement_id:
            return None
        return f"{self.file_format}|{self.account or ''}|{self.statement_id}|{self.statement_date.isoformat()}"


@dataclass(frozen=True)
class ParsedFile:
    file_format: str
    statements: tuple[BankStatement, ...] = field(default_factory=tuple)
    # The entry records in the file, counted by a pass independent of the reader (lines starting
    # ":61:", "16," records, Ntry elements, ST segments, data rows). Every one must be read into a
    # statement (posted or counted as not booked), or the file is rejected: never fewer silently.
    entry_records: int | None = None


def check_every_entry_read(parsed: ParsedFile) -> ParsedFile:
    """The guard every parser passes through: the entries read equal the entry records counted."""
    if parsed.entry_records is None:
        raise FileRejected("file", "the entry records were not counted; nothing was posted")
    read = sum(s.entry_records for s in parsed.statements)
    if read != parsed.entry_records:
        raise FileRejected("file", f"holds {parsed.entry_records} entry records but {read} were read into"
                                   " statements; nothing was posted")
    return parsed
