"""The Payment aggregate and the rules for applying remittance to open items.

A payment arrives with a remittance advice: lines that name an invoice (by id or by number) and
the amount the customer says it pays on it. Applying a line against the invoice's open balance:
- full: the line pays the open balance exactly, the invoice closes;
- short: the line pays less, the rest stays open and a short pay is detected (the customer's
  reason code travels with it, so disputes can open a deduction);
- over: the line pays more, the open balance is applied and the excess stays unapplied.
A line naming no open item of the payment's customer and currency applies nothing. Whatever the
remittance does not apply is recorded as unapplied cash, so applied + unapplied = the payment.

A receipt from a bank file is received with the matching engine's proposal (receive_matched):
applied only when it reached the confidence threshold and still fits the locked balances, with
small differences written off and larger ones detected as short pays. Afterwards a person can
apply or split what is unapplied (apply_manually) and reverse applications (reverse); a returned
payment reverses all of them and is marked returned (return_payment). A small-balance write-off
belongs to the application that justified it (the one just applied to its invoice): reversing
that application, whatever the reason, reverses the write-off right after it, so the invoice
reopens in full. BankImport records the statements of an imported file.

Rules are checked here; state changes only in the when_* methods. No I/O: the caller passes in
the open items it locked, and those balances are what the decisions are based on.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Iterable, Sequence

from shared.aggregate import Aggregate
from shared.contracts import (BankStatementImported, ChargebackReceived, ProcessorFeeRecorded, PaymentApplied, PaymentReceived, PaymentRefunded, PaymentReturned,
                              PaymentUnapplied, ShortPayDetected, SmallBalanceWriteOffReversed, SmallBalanceWrittenOff, UnappliedCashRecorded)
from shared.money import ZERO, MoneyError, exact_amount, quantize, to_str, validate_currency
from services.cash_application.domain.matching import MatchResult

PAYMENT_METHODS = ("ach", "wire", "check", "card", "cash", "other")

# The customer_id of a receipt whose payer the matcher could not identify, on PaymentReceived and
# UnappliedCashRecorded (the contract requires a string). The payment takes the customer of the
# first invoice a person applies it to: every PaymentApplied names the invoice's customer.
UNIDENTIFIED_CUSTOMER = ""

# How an application was decided. Remittance advice is the customer's own instruction, hence
# full confidence; the auto-matching rules that come later will carry lower ones.
RULE_REMITTANCE = "remittance"
REMITTANCE_CONFIDENCE = Decimal("1.00")

NO_REMITTANCE = "no remittance"


class CashApplicationRuleViolation(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class OpenItem:
    """An invoice as the deciding transaction sees it (locked, so the balance holds until commit)."""

    invoice_id: str
    invoice_number: str
    customer_id: str
    currency: str
    open_balance: Decimal


@dataclass(frozen=True)
class RemittanceLine:
    amount: Decimal
    invoice_id: str | None = None
    invoice_number: str | None = None
    reason_code: str | None = None

    @property
    def named_as(self) -> str:
        """The invoice as the customer named it, for messages a collector reads."""
        return self.invoice_number or self.invoice_id or "?"


@dataclass(frozen=True)
class RemittanceOutcome:
    applied: Decimal
    shortfall: Decimal  # left open on the invoice when the customer paid less than its balance
    excess: Decimal  # paid beyond the open balance: stays unapplied on the payment


def apply_remittance(remitted: Decimal, open_balance: Decimal, currency: str) -> RemittanceOutcome:
    """Apply what the customer remitted against an invoice's open balance.

    Both amounts must already be exact in the currency's minor unit (a float or an extra decimal
    is refused, never rounded), so the results are exact too: no rounding happens here."""
    remitted = exact_amount(remitted, currency)
    open_balance = exact_amount(open_balance, currency)
    if remitted < 0:
        raise MoneyError("a remitted amount cannot be negative")
    nothing = quantize(ZERO, currency)
    if open_balance <= 0:
        return RemittanceOutcome(applied=nothing, shortfall=nothing, excess=remitted)
    applied = min(remitted, open_balance)
    return RemittanceOutcome(applied=applied, shortfall=open_balance - applied, excess=remitted - applied)


def resolve_line(line: RemittanceLine, customers: frozenset[str], currency: str,
                 items: Sequence[OpenItem]) -> OpenItem | str:
    """The open item a remittance line names, or why it names none. customers: the payer and,
    for a parent account, every customer below it."""
    by_id = {item.invoice_id: item for item in items}
    by_number: dict[str, OpenItem] = {}
    for item in sorted(items, key=lambda i: i.invoice_id):
        by_number.setdefault(item.invoice_number, item)
    item = by_id.get(line.invoice_id) if line.invoice_id else by_number.get(line.invoice_number or "")
    if item is None or item.customer_id not in customers:
        return f"invoice {line.named_as} not found"
    if line.invoice_id and line.invoice_number and item.invoice_number != line.invoice_number:
        return f"invoice_id {line.invoice_id} and invoice_number {line.invoice_number} name different invoices"
    if item.currency != currency:
        return f"invoice {line.named_as} is in {item.currency}, the payment in {currency}"
    return item


def describe_unapplied(parts: list[tuple[str, Decimal]]) -> str:
    """One reason for the unapplied cash; with several causes each names its amount."""
    merged: dict[str, Decimal] = {}
    for reason, amount in parts:
        merged[reason] = merged.get(reason, ZERO) + amount
    if len(merged) == 1:
        return next(iter(merged))
    return "; ".join(f"{reason}: {to_str(amount)}" for reason, amount in merged.items())


@dataclass
class _Instruction:
    """All lines of one remittance that name the same invoice: one instruction to pay it."""

    item: OpenItem
    named_as: str
    remitted: Decimal
    reason_code: str | None


@dataclass(frozen=True)
class Application:
    application_id: str
    invoice_id: str
    customer_id: str
    amount: Decimal
    rule: str


@dataclass(frozen=True)
class WriteOff:
    """A small-balance write-off in force, and the application that justified it."""

    adjustment_id: str
    application_id: str
    invoice_id: str
    customer_id: str
    amount: Decimal


@dataclass(frozen=True)
class ManualApplication:
    invoice_id: str
    amount: Decimal


class Payment(Aggregate):
    stream_type = "payment"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.customer_id = ""
        self.currency = ""
        self.amount = ZERO
        self.value_date: date | None = None
        self.method = ""
        self.reference: str | None = None
        self.applications: dict[str, Application] = {}  # by application_id; reversed ones removed
        self.used_application_ids: set[str] = set()
        self.short_pays: dict[str, ShortPayDetected] = {}
        self.unapplied_reasons: list[str] = []
        self.returned = False
        self.write_offs: dict[str, WriteOff] = {}  # in force, by the application_id that justified them
        self._latest_application: dict[str, str] = {}  # invoice_id -> the application last made on it
        self.refunds: dict[str, Decimal] = {}  # refund_id -> amount paid back

    @property
    def applied_amount(self) -> Decimal:
        return sum((a.amount for a in self.applications.values()), ZERO)

    def _application_id(self, invoice_id: str) -> str:
        base = candidate = f"{self.id}:{invoice_id}"
        n = 1
        while candidate in self.used_application_ids:
            n += 1
            candidate = f"{base}:{n}"
        return candidate

    @property
    def refunded_amount(self) -> Decimal:
        return sum(self.refunds.values(), ZERO)

    @property
    def unapplied_amount(self) -> Decimal:
        return self.amount - self.applied_amount - self.refunded_amount

    @property
    def written_off_amount(self) -> Decimal:
        return sum((w.amount for w in self.write_offs.values()), ZERO)

    def receive(self, *, customer_id: str, amount: Decimal, currency: str, value_date: date, method: str,
                reference: str | None, remittance: Sequence[RemittanceLine], open_items: Iterable[OpenItem],
                at: datetime, family: frozenset[str] | None = None) -> None:
        """Receive the payment and apply it as its remittance says, against the given open items.
        family: the customers the payer pays for (a parent account's children); each application
        and short pay names the invoice's customer."""
        if self.exists:
            raise CashApplicationRuleViolation(f"payment {self.id} was already received", "payment_id")
        try:
            currency = validate_currency(currency)
        except MoneyError as exc:
            raise CashApplicationRuleViolation(str(exc), "currency") from exc
        if method not in PAYMENT_METHODS:
            raise CashApplicationRuleViolation(f"method must be one of {', '.join(PAYMENT_METHODS)}", "method")
        amount = self._money(amount, currency, "amount")
        lines = []
        for i, line in enumerate(remittance):
            if not (line.invoice_id or line.invoice_number):
                raise CashApplicationRuleViolation("a remittance line names an invoice_id or an invoice_number",
                                                   f"remittance.{i}")
            lines.append((line, self._money(line.amount, currency, f"remittance.{i}.amount")))
        remitted_total = sum((line_amount for _, line_amount in lines), ZERO)
        if remitted_total > amount:
            raise CashApplicationRuleViolation(
                f"remittance lines total {to_str(remitted_total)}, more than the payment's {to_str(amount)}",
                "remittance")

        items = list(open_items)
        instructions: dict[str, _Instruction] = {}
        unapplied: list[tuple[str, Decimal]] = []
        for line, line_amount in lines:
            target = resolve_line(line, family or frozenset({customer_id}), currency, items)
            if isinstance(target, str):
                unapplied.append((target, line_amount))
                continue
            instruction = instructions.get(target.invoice_id)
            if instruction is None:
                instructions[target.invoice_id] = _Instruction(target, target.invoice_number or line.named_as,
                                                               line_amount, line.reason_code)
            else:
                instruction.remitted += line_amount
                instruction.reason_code = instruction.reason_code or line.reason_code

        self.trigger(PaymentReceived(payment_id=self.id, customer_id=customer_id, amount=amount, currency=currency,
                                     value_date=value_date, method=method, reference=reference), at)
        for instruction in instructions.values():
            item = instruction.item
            if item.open_balance <= 0:
                unapplied.append((f"invoice {instruction.named_as} is closed", instruction.remitted))
                continue
            outcome = apply_remittance(instruction.remitted, item.open_balance, currency)
            self.trigger(PaymentApplied(payment_id=self.id, invoice_id=item.invoice_id, customer_id=item.customer_id,
                                        amount=outcome.applied, currency=currency, value_date=value_date,
                                        application_id=self._application_id(item.invoice_id), rule=RULE_REMITTANCE,
                                        confidence=REMITTANCE_CONFIDENCE), at)
            if outcome.shortfall > 0:
                self.trigger(ShortPayDetected(payment_id=self.id, invoice_id=item.invoice_id, customer_id=item.customer_id,
                                              currency=currency, open_amount=item.open_balance,
                                              paid_amount=outcome.applied, shortfall=outcome.shortfall,
                                              value_date=value_date, reason_code=instruction.reason_code), at)
            if outcome.excess > 0:
                unapplied.append((f"overpayment of invoice {instruction.named_as}", outcome.excess))
        if amount > remitted_total:
            unapplied.append((NO_REMITTANCE, amount - remitted_total))
        unapplied_total = sum((part for _, part in unapplied), ZERO)
        if unapplied_total > 0:
            self.trigger(UnappliedCashRecorded(payment_id=self.id, customer_id=customer_id, amount=unapplied_total,
                                               currency=currency, value_date=value_date,
                                               reason=describe_unapplied(unapplied)), at)
        if self.applied_amount + unapplied_total != amount:  # every cent applied or unapplied, none lost
            raise AssertionError(f"payment {self.id}: applied {self.applied_amount} + unapplied {unapplied_total}"
                                 f" != {amount}")

    def receive_matched(self, *, customer_id: str, amount: Decimal, currency: str, value_date: date, method: str,
                        reference: str | None, result: MatchResult, auto_apply: bool, at: datetime,
                        locked: dict[str, OpenItem]) -> None:
        """Receive a receipt from a bank file and apply what the matching engine proposed.

        Applied only when `auto_apply` (the result reached the policy's threshold) and only
        against the locked open items: an allocation on an invoice whose balance moved since the
        match, or that is not locked, is not applied (the receipt goes to the queue instead).
        Unidentified receipts have customer_id UNIDENTIFIED_CUSTOMER until a person applies them."""
        if self.exists:
            raise CashApplicationRuleViolation(f"payment {self.id} was already received", "payment_id")
        amount = self._money(amount, currency, "amount")
        self.trigger(PaymentReceived(payment_id=self.id, customer_id=customer_id, amount=amount, currency=currency,
                                     value_date=value_date, method=method if method in PAYMENT_METHODS else "other",
                                     reference=reference), at)
        reason = result.reason
        if auto_apply and not all(a.invoice_id in locked and locked[a.invoice_id].open_balance >= a.applied + a.write_off
                                  for a in result.allocations):
            auto_apply, reason = False, "an invoice's open balance changed while matching"
        if auto_apply and sum((a.applied for a in result.allocations), ZERO) > amount:
            auto_apply, reason = False, "the proposed applications exceed the payment"
        if auto_apply and result.allocations:
            for allocation in result.allocations:
                item = locked[allocation.invoice_id]
                self.trigger(PaymentApplied(
                    payment_id=self.id, invoice_id=item.invoice_id, customer_id=item.customer_id,
                    amount=allocation.applied, currency=currency, value_date=value_date,
                    application_id=self._application_id(item.invoice_id), rule=allocation.rule,
                    confidence=allocation.confidence), at)
                locked[item.invoice_id] = replace(item, open_balance=item.open_balance - allocation.applied
                                                  - allocation.write_off)
                if allocation.write_off > 0:
                    # Named after the application it belongs to: unique even if this payment is
                    # reversed and applied to the invoice again. The first application's id is
                    # "<payment>:<invoice>", so the ids written before this rule read the same.
                    self.trigger(SmallBalanceWrittenOff(
                        adjustment_id=f"{self._latest_application[item.invoice_id]}:wo", payment_id=self.id,
                        invoice_id=item.invoice_id, customer_id=item.customer_id, amount=allocation.write_off,
                        currency=currency, value_date=value_date, reason_code=allocation.reason_code), at)
                if allocation.short_pay > 0:
                    self.trigger(ShortPayDetected(
                        payment_id=self.id, invoice_id=item.invoice_id, customer_id=item.customer_id,
                        currency=currency, open_amount=allocation.open_balance, paid_amount=allocation.applied,
                        shortfall=allocation.short_pay, value_date=value_date, reason_code=allocation.reason_code), at)
        elif result.allocations:
            reason = reason if reason and reason != "overpayment" else (
                f"confidence {min(a.confidence for a in result.allocations)} below the auto-apply threshold")
        unapplied = amount - self.applied_amount
        if unapplied > 0:
            self.trigger(UnappliedCashRecorded(payment_id=self.id, customer_id=customer_id, amount=unapplied,
                                               currency=currency, value_date=value_date,
                                               reason=reason or "no invoice matched"), at)

    def apply_manually(self, applications: Sequence[ManualApplication], open_items: dict[str, OpenItem],
                       on: date, at: datetime) -> None:
        """A person applies (or splits) the unapplied cash: each amount at most the invoice's open
        balance, all of them at most what is unapplied. The applications carry the payment's value
        date (when the money arrived), not the day of the decision."""
        self._must_be_live()
        if not applications:
            raise CashApplicationRuleViolation("name at least one invoice to apply to", "applications")
        total = ZERO
        for i, application in enumerate(applications):
            field = f"applications.{i}"
            amount = self._money(application.amount, self.currency, f"{field}.amount")
            item = open_items.get(application.invoice_id)
            if item is None:
                raise CashApplicationRuleViolation(f"invoice {application.invoice_id} is not an open item here",
                                                   f"{field}.invoice_id")
            if item.currency != self.currency:
                raise CashApplicationRuleViolation(f"invoice {item.invoice_id} is in {item.currency}, the payment in"
                                                   f" {self.currency}", f"{field}.invoice_id")
            if amount > item.open_balance:
                raise CashApplicationRuleViolation(f"{to_str(amount)} is more than invoice {item.invoice_id}'s open"
                                                   f" balance {to_str(item.open_balance)}", f"{field}.amount")
            open_items[item.invoice_id] = replace(item, open_balance=item.open_balance - amount)
            total += amount
        if total > self.unapplied_amount:
            raise CashApplicationRuleViolation(f"applications total {to_str(total)}, more than the payment's unapplied"
                                               f" {to_str(self.unapplied_amount)}", "applications")
        for application in applications:
            item = open_items[application.invoice_id]
            self.trigger(PaymentApplied(
                payment_id=self.id, invoice_id=item.invoice_id, customer_id=item.customer_id,
                amount=exact_amount(application.amount, self.currency), currency=self.currency,
                value_date=self.value_date or on,
                application_id=self._application_id(item.invoice_id), rule="manual", confidence=Decimal("1")), at)

    def reverse(self, application_ids: Sequence[str] | None, reason: str, on: date,
                at: datetime, note: str | None = None) -> dict[str, Decimal]:
        """Reverse applications (all when none named), each followed by the reversal of the
        small-balance write-off it justified, if any. Returns how much each invoice's open balance
        grows back (the applied amounts and the write-offs)."""
        self._must_be_live()
        if application_ids:
            unknown = [a for a in application_ids if a not in self.applications]
            if unknown:
                raise CashApplicationRuleViolation(f"no active application {', '.join(unknown)} on payment {self.id}",
                                                   "application_ids")
            chosen = [self.applications[a] for a in application_ids]
        else:
            chosen = list(self.applications.values())
        reopened: dict[str, Decimal] = {}
        for application in chosen:
            self.trigger(PaymentUnapplied(payment_id=self.id, application_id=application.application_id,
                                          invoice_id=application.invoice_id, customer_id=application.customer_id,
                                          amount=application.amount, currency=self.currency, unapplied_on=on,
                                          reason=reason, note=note), at)
            grows_back = application.amount
            write_off = self.write_offs.get(application.application_id)
            if write_off is not None:
                self.trigger(SmallBalanceWriteOffReversed(
                    adjustment_id=write_off.adjustment_id, payment_id=self.id, invoice_id=write_off.invoice_id,
                    customer_id=write_off.customer_id, amount=write_off.amount, currency=self.currency,
                    reversed_on=on, reason=reason), at)
                grows_back += write_off.amount
            reopened[application.invoice_id] = reopened.get(application.invoice_id, ZERO) + grows_back
        return reopened

    def return_payment(self, reason_code: str, reason: str | None, on: date, at: datetime) -> None:
        """The bank took the money back: every application is reversed, then PaymentReturned."""
        self._must_be_live()
        self.reverse(None, "payment_returned", on, at)
        self.trigger(PaymentReturned(payment_id=self.id, customer_id=self.customer_id, amount=self.amount,
                                     currency=self.currency, returned_on=on, reason_code=reason_code,
                                     reason=reason), at)

    def refund(self, *, refund_id: str, amount: Decimal, method: str, reference: str | None, on: date,
               reason: str | None, at: datetime) -> None:
        """Pay unapplied cash back to the customer. Never more than is unapplied now: a concurrent
        refund or application loses on the stream version (409) and, retried, sees what is left."""
        self._must_be_live()
        if refund_id in self.refunds:
            return
        amount = self._money(amount, self.currency, "amount")
        if method not in PAYMENT_METHODS:
            raise CashApplicationRuleViolation(f"method must be one of {', '.join(PAYMENT_METHODS)}", "method")
        if self.customer_id == UNIDENTIFIED_CUSTOMER:
            raise CashApplicationRuleViolation("identify the payer before refunding (apply or assign the payment)",
                                               "payment_id")
        if amount > self.unapplied_amount:
            raise CashApplicationRuleViolation(
                f"refund of {amount} exceeds the payment's unapplied {self.unapplied_amount}", "amount")
        if self.value_date and on < self.value_date:
            raise CashApplicationRuleViolation("a refund cannot predate the payment's value date", "refunded_on")
        self.trigger(PaymentRefunded(refund_id=refund_id, payment_id=self.id, customer_id=self.customer_id,
                                     amount=amount, currency=self.currency, method=method, reference=reference,
                                     refunded_on=on, reason=reason), at)

    def refund_to_card(self, *, refund_id: str, amount: Decimal, on: date, reason: str | None, at: datetime) -> None:
        """The processor paid part or all of a card charge back to the card holder. What the
        charge left unapplied is refunded first; when that is not enough, the charge's
        applications are reversed (reason `card_refund`: the invoices are owed again) and the rest
        of the charge waits in the unapplied-cash queue for a person to apply again."""
        self._must_be_live()
        if refund_id in self.refunds:
            return
        amount = self._money(amount, self.currency, "amount")
        if amount > self.amount - self.refunded_amount:
            raise CashApplicationRuleViolation(
                f"refund of {amount} exceeds what is left of the charge ({self.amount - self.refunded_amount})",
                "amount")
        if self.customer_id == UNIDENTIFIED_CUSTOMER:
            raise CashApplicationRuleViolation("the charge's payer is not identified: apply it before its refund"
                                               " can be booked", "payment_id")
        reversed_ = amount > self.unapplied_amount
        if reversed_:
            self.reverse(None, "card_refund", max(on, self.value_date or on), at)
        self.refund(refund_id=refund_id, amount=amount, method="card", reference=refund_id,
                    on=max(on, self.value_date or on), reason=reason, at=at)
        if reversed_ and self.unapplied_amount > 0:
            self.trigger(UnappliedCashRecorded(
                payment_id=self.id, customer_id=self.customer_id, amount=self.unapplied_amount, currency=self.currency,
                value_date=self.value_date or on,
                reason=f"card refund {refund_id} of {to_str(amount)}: the rest of the charge is to be applied again"),
                at)

    def charge_back(self, *, chargeback_id: str, amount: Decimal, on: date, processor: str,
                    processor_reason: str | None, reference: str | None, at: datetime) -> None:
        """The card holder disputed the charge and the processor took its amount back: the charge
        is returned (every application reversed, the invoices owed again, PaymentReturned reason
        code CHARGEBACK), and one ChargebackReceived per invoice it had paid tells disputes to
        open the case. Only a chargeback of the whole charge is taken here; a partial one is left
        to a person (the caller reports it)."""
        self._must_be_live()
        amount = self._money(amount, self.currency, "amount")
        if amount != self.amount - self.refunded_amount:
            raise CashApplicationRuleViolation(
                f"chargeback of {amount} is not the charge's {self.amount - self.refunded_amount}: a partial"
                " chargeback is left to a person", "amount")
        on = max(on, self.value_date or on)
        paid = [(a.invoice_id, a.customer_id, a.amount) for a in self.applications.values()]
        self.return_payment("CHARGEBACK", f"{processor} chargeback {reference or chargeback_id}"
                            f"{' (' + processor_reason + ')' if processor_reason else ''}", on, at)
        rest = amount - sum((part for _, _, part in paid), ZERO)
        parts = paid + ([("", self.customer_id, rest)] if rest > 0 else [])
        for invoice_id, customer_id, part in parts:
            self.trigger(ChargebackReceived(
                chargeback_id=f"{chargeback_id}:{invoice_id}" if invoice_id else chargeback_id, payment_id=self.id,
                invoice_id=invoice_id, customer_id=customer_id, amount=part, currency=self.currency, received_on=on,
                processor=processor, processor_reason=processor_reason, reference=reference), at)

    def when_ChargebackReceived(self, e: ChargebackReceived) -> None:
        pass  # the return before it moved the state; the event is for disputes

    def when_PaymentRefunded(self, e: PaymentRefunded) -> None:
        self.refunds[e.refund_id] = e.amount

    def _must_be_live(self) -> None:
        if not self.exists:
            raise CashApplicationRuleViolation(f"payment {self.id} does not exist", "payment_id")
        if self.returned:
            raise CashApplicationRuleViolation(f"payment {self.id} was returned by the bank", "payment_id")

    @staticmethod
    def _money(value: Decimal, currency: str, field: str) -> Decimal:
        try:
            exact = exact_amount(value, currency)
        except MoneyError as exc:
            raise CashApplicationRuleViolation(str(exc), field) from exc
        if exact <= 0:
            raise CashApplicationRuleViolation("amount must be positive", field)
        return exact

    def when_PaymentReceived(self, e: PaymentReceived) -> None:
        self.customer_id = e.customer_id
        self.currency = e.currency
        self.amount = e.amount
        self.value_date = e.value_date
        self.method = e.method
        self.reference = e.reference

    def when_PaymentApplied(self, e: PaymentApplied) -> None:
        self.applications[e.application_id] = Application(e.application_id, e.invoice_id, e.customer_id, e.amount,
                                                          e.rule)
        self.used_application_ids.add(e.application_id)
        self._latest_application[e.invoice_id] = e.application_id
        if self.customer_id == UNIDENTIFIED_CUSTOMER:
            self.customer_id = e.customer_id  # as the read model does; a return then names the customer

    def when_PaymentUnapplied(self, e: PaymentUnapplied) -> None:
        self.applications.pop(e.application_id, None)

    def when_PaymentReturned(self, e: PaymentReturned) -> None:
        self.returned = True

    def when_SmallBalanceWrittenOff(self, e: SmallBalanceWrittenOff) -> None:
        # Emitted right after the application it closes the invoice for: the latest one on it.
        application_id = self._latest_application[e.invoice_id]
        self.write_offs[application_id] = WriteOff(e.adjustment_id, application_id, e.invoice_id, e.customer_id,
                                                   e.amount)

    def when_SmallBalanceWriteOffReversed(self, e: SmallBalanceWriteOffReversed) -> None:
        for application_id, write_off in list(self.write_offs.items()):
            if write_off.adjustment_id == e.adjustment_id:
                del self.write_offs[application_id]

    def when_ShortPayDetected(self, e: ShortPayDetected) -> None:
        self.short_pays[e.invoice_id] = e

    def when_UnappliedCashRecorded(self, e: UnappliedCashRecorded) -> None:
        self.unapplied_reasons.append(e.reason)


class BankImport(Aggregate):
    """One imported file: its statements, recorded once (the import is atomic and idempotent)."""

    stream_type = "bank-import"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.statements: list[BankStatementImported] = []

    def record_statement(self, *, file_format: str, account: str | None, statement_date: date, currency: str,
                         entries: int, total_credits: Decimal, at: datetime) -> None:
        self.trigger(BankStatementImported(import_id=self.id, file_format=file_format, account=account,
                                           statement_date=statement_date, currency=currency, entries=entries,
                                           total_credits=quantize(total_credits, currency)), at)

    def when_BankStatementImported(self, e: BankStatementImported) -> None:
        self.statements.append(e)


class CardSettlement(Aggregate):
    """One card processor payout, as far as cash application books it beyond the charges: the
    processor's fees, each an adjustment event of its own (never netted into a receipt)."""

    stream_type = "card-payout"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.fee_ids: set[str] = set()

    def record_fee(self, *, fee_id: str, processor: str, payout_id: str, payment_id: str, customer_id: str,
                   amount: Decimal, currency: str, on: date, fee_type: str, reference: str | None,
                   at: datetime) -> None:
        if fee_id in self.fee_ids or amount == 0:
            return
        self.trigger(ProcessorFeeRecorded(fee_id=fee_id, processor=processor, payout_id=payout_id,
                                          payment_id=payment_id, customer_id=customer_id,
                                          amount=quantize(amount, currency), currency=currency, recorded_on=on,
                                          fee_type=fee_type, reference=reference), at)

    def when_ProcessorFeeRecorded(self, e: ProcessorFeeRecorded) -> None:
        self.fee_ids.add(e.fee_id)
