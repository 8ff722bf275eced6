"""The Dispute aggregate: a disputed or deducted amount on one invoice, open until resolved.
Rules are checked in the command methods; state changes only in when_*."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal

from shared.aggregate import Aggregate
from shared.contracts import (
    DeductionOpened,
    DisputeAssigned,
    DisputeAttachmentAdded,
    DisputeEscalated,
    DisputeNoteAdded,
    DisputeOpened,
    DisputeReclassified,
    DisputeResolved,
    DisputeStatusChanged,
)
from shared.money import ZERO, quantize
from services.disputes.domain.reason_codes import BY_CODE, TEAMS, due_days, is_selectable, team_for

Resolution = Literal["credit", "rejected", "partial_credit"]
RESOLUTIONS: tuple[str, ...] = ("credit", "rejected", "partial_credit")
# Not chosen by a person: a deduction closed because its payment was returned (PaymentReturned).
WITHDRAWN = "withdrawn"
# A deduction's validity decision: valid (credited), invalid (re-billed) or partly each.
VALIDITY = ("valid", "invalid", "partial")
# The workflow's statuses while open (resolved is the resolution).
WORK_STATUSES = ("new", "in_review", "waiting_on_customer", "waiting_on_internal")
ATTACHMENT_KINDS = ("proof_of_delivery", "pricing_agreement", "purchase_order", "correspondence", "other")


class DisputeRuleViolation(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DisputeAlreadyResolved(DisputeRuleViolation):
    """Resolving a resolved dispute: a conflict with its current state, not a bad request."""


@dataclass(frozen=True)
class InvoiceReference:
    """What disputes knows of an invoice (from InvoiceIssued)."""

    invoice_id: str
    customer_id: str
    currency: str
    total_amount: Decimal
    issue_date: date


def deduction_id(payment_id: str, invoice_id: str) -> str:
    """Deterministic: a short pay redelivered (even under a new event id) opens one deduction."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ledgerline:deduction:{payment_id}:{invoice_id}"))


class Dispute(Aggregate):
    stream_type = "dispute"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.kind: Literal["dispute", "deduction"] | None = None
        self.invoice_id = ""
        self.line_number: int | None = None
        self.customer_id = ""
        self.currency = ""
        self.amount = ZERO
        self.reason_code = ""
        self.opened_on: date | None = None
        self.payment_id: str | None = None
        self.status: Literal["open", "resolved"] | None = None
        self.resolution: str | None = None
        self.credit_amount: Decimal | None = None
        self.resolved_on: date | None = None
        self.owner: str | None = None
        self.team: str | None = None
        self.rebill_amount: Decimal | None = None
        self.customer_reason_code: str | None = None
        self.external_reference: str | None = None
        self.work_status = "new"
        self.note_ids: set[str] = set()
        self.attachment_ids: set[str] = set()
        self.escalated_for: set[date] = set()  # due dates already escalated

    @property
    def due_on(self) -> date | None:
        """The reason code's days after opening: when the dispute is escalated if still open."""
        return self.opened_on + timedelta(days=due_days(self.reason_code)) if self.opened_on else None

    # -- commands -------------------------------------------------------------------------

    def open(self, *, invoice: InvoiceReference, amount: Decimal, reason_code: str, opened_on: date,
             description: str | None, already_disputed: Decimal, at: datetime, line_number: int | None = None,
             line_count: int | None = None) -> None:
        """A customer disputes part or all of an invoice. already_disputed: what other disputes
        on the invoice hold (open amounts plus credits granted), so the invoice is never
        disputed for more than it is worth."""
        if self.exists:
            raise DisputeRuleViolation(f"dispute {self.id} already exists", "dispute_id")
        if not is_selectable(reason_code):
            known = ", ".join(code for code in BY_CODE if is_selectable(code))
            raise DisputeRuleViolation(f"reason code {reason_code!r} is not one of {known}", "reason_code")
        self._check_amount(amount, invoice.currency, "amount")
        disputable = invoice.total_amount - already_disputed
        if amount > disputable:
            raise DisputeRuleViolation(
                f"amount {amount} exceeds what is left to dispute on invoice {invoice.invoice_id}"
                f" ({disputable} of {invoice.total_amount})", "amount")
        if opened_on < invoice.issue_date:
            raise DisputeRuleViolation("a dispute cannot be opened before its invoice was issued", "opened_on")
        if line_number is not None and not 1 <= line_number <= (line_count or 0):
            raise DisputeRuleViolation(f"invoice {invoice.invoice_id} has lines 1 to {line_count or 0},"
                                       f" not {line_number}", "line_number")
        self.trigger(DisputeOpened(dispute_id=self.id, invoice_id=invoice.invoice_id, customer_id=invoice.customer_id,
                                   currency=invoice.currency, amount=amount, reason_code=reason_code,
                                   opened_on=opened_on, description=description, line_number=line_number), at)

    def open_deduction(self, *, invoice_id: str, customer_id: str, payment_id: str, currency: str,
                       shortfall: Decimal, reason_code: str, opened_on: date, at: datetime,
                       customer_reason_code: str | None = None, external_reference: str | None = None) -> None:
        """A short pay becomes a deduction to work. Opening one that exists changes nothing."""
        if self.exists:
            return
        if reason_code not in BY_CODE:
            raise DisputeRuleViolation(f"reason code {reason_code!r} is not in the catalogue", "reason_code")
        self._check_amount(shortfall, currency, "shortfall")
        self.trigger(DeductionOpened(dispute_id=self.id, invoice_id=invoice_id, customer_id=customer_id,
                                     payment_id=payment_id, currency=currency, amount=shortfall,
                                     reason_code=reason_code, opened_on=opened_on,
                                     customer_reason_code=customer_reason_code or None,
                                     external_reference=external_reference), at)

    def _must_be_open(self) -> None:
        if not self.exists:
            raise DisputeRuleViolation(f"dispute {self.id} does not exist", "dispute_id")
        if self.status == "resolved":
            raise DisputeAlreadyResolved(
                f"dispute {self.id} was already resolved ({self.resolution}) on {self.resolved_on}", "dispute_id")

    def reclassify(self, *, reason_code: str, on: date, by: str, at: datetime) -> None:
        """An analyst moves the dispute to another catalogue reason (a retailer's vague code, a
        first guess proved wrong)."""
        self._must_be_open()
        if not is_selectable(reason_code):
            known = ", ".join(code for code in BY_CODE if is_selectable(code))
            raise DisputeRuleViolation(f"reason code {reason_code!r} is not one of {known}", "reason_code")
        if reason_code == self.reason_code:
            raise DisputeRuleViolation(f"dispute {self.id} already has reason code {reason_code}", "reason_code")
        if self.opened_on and on < self.opened_on:
            raise DisputeRuleViolation("a reclassification cannot predate the dispute", "reclassified_on")
        self.trigger(DisputeReclassified(dispute_id=self.id, invoice_id=self.invoice_id, customer_id=self.customer_id,
                                         from_reason_code=self.reason_code, to_reason_code=reason_code,
                                         reclassified_on=on, reclassified_by=by), at)

    def assign(self, *, owner: str | None, team: str, on: date, by: str, at: datetime) -> None:
        self._must_be_open()
        if team not in TEAMS:
            raise DisputeRuleViolation(f"team must be one of {', '.join(TEAMS)}", "team")
        if (owner, team) == (self.owner, self.team):
            raise DisputeRuleViolation(f"dispute {self.id} is already with {owner or 'nobody'} in {team}", "owner")
        self.trigger(DisputeAssigned(dispute_id=self.id, customer_id=self.customer_id, owner=owner, team=team,
                                     assigned_on=on, assigned_by=by), at)

    def change_status(self, *, status: str, on: date, by: str, at: datetime) -> None:
        self._must_be_open()
        if status not in WORK_STATUSES or status == "new":
            raise DisputeRuleViolation(f"status must be one of {', '.join(WORK_STATUSES[1:])} (resolve to close)",
                                       "status")
        if status == self.work_status:
            raise DisputeRuleViolation(f"dispute {self.id} is already {status}", "status")
        self.trigger(DisputeStatusChanged(dispute_id=self.id, customer_id=self.customer_id,
                                          from_status=self.work_status, to_status=status, changed_on=on,
                                          changed_by=by), at)

    def add_note(self, *, note_id: str, text: str, on: date, by: str, at: datetime) -> None:
        """Notes may be added after resolution too (what was agreed, for the record)."""
        if not self.exists:
            raise DisputeRuleViolation(f"dispute {self.id} does not exist", "dispute_id")
        if note_id in self.note_ids:
            return
        if not text.strip():
            raise DisputeRuleViolation("a note needs text", "text")
        self.trigger(DisputeNoteAdded(dispute_id=self.id, note_id=note_id, text=text, author=by, added_on=on), at)

    def add_attachment(self, *, attachment_id: str, file_name: str, content_type: str, size_bytes: int,
                       sha256: str, kind: str, max_bytes: int, on: date, by: str, at: datetime) -> None:
        if not self.exists:
            raise DisputeRuleViolation(f"dispute {self.id} does not exist", "dispute_id")
        if attachment_id in self.attachment_ids:
            return
        if kind not in ATTACHMENT_KINDS:
            raise DisputeRuleViolation(f"kind must be one of {', '.join(ATTACHMENT_KINDS)}", "kind")
        if size_bytes <= 0:
            raise DisputeRuleViolation("the attachment is empty", "body")
        if size_bytes > max_bytes:
            raise DisputeRuleViolation(f"the attachment has {size_bytes} bytes; at most {max_bytes} are kept", "body")
        if not file_name.strip():
            raise DisputeRuleViolation("name the file", "file_name")
        self.trigger(DisputeAttachmentAdded(dispute_id=self.id, attachment_id=attachment_id, file_name=file_name,
                                            content_type=content_type, size_bytes=size_bytes, sha256=sha256,
                                            kind=kind, added_by=by, added_on=on), at)

    def escalate_if_overdue(self, *, as_of: date, at: datetime) -> bool:
        """Open past its due date and not yet escalated for that due date: escalate (once)."""
        due = self.due_on
        if self.status != "open" or due is None or as_of <= due or due in self.escalated_for:
            return False
        self.trigger(DisputeEscalated(dispute_id=self.id, customer_id=self.customer_id, reason_code=self.reason_code,
                                      team=self.team or team_for(self.reason_code), owner=self.owner, due_on=due,
                                      escalated_on=as_of), at)
        return True

    def decide_validity(self, *, valid_amount: Decimal, invalid_amount: Decimal, decided_on: date,
                        at: datetime) -> None:
        """A deduction's validity: the valid part is credited (a credit memo on the invoice), the
        invalid part re-billed (a new invoice linked to the deduction, back to collections).
        valid + invalid is the whole deduction."""
        self._must_be_open()
        if self.kind != "deduction":
            raise DisputeRuleViolation(f"{self.id} is a dispute, not a deduction: resolve it instead", "dispute_id")
        for name, value in (("valid_amount", valid_amount), ("invalid_amount", invalid_amount)):
            if value < 0:
                raise DisputeRuleViolation(f"{name} cannot be negative", name)
            if quantize(value, self.currency) != value:
                raise DisputeRuleViolation(f"{self.currency} amounts have at most its minor unit's decimals", name)
        if valid_amount + invalid_amount != self.amount:
            raise DisputeRuleViolation(
                f"valid {valid_amount} + invalid {invalid_amount} must make the deduction's {self.amount}",
                "invalid_amount")
        if self.opened_on and decided_on < self.opened_on:
            raise DisputeRuleViolation("a decision cannot predate the deduction", "decided_on")
        resolution = "valid" if invalid_amount == 0 else "invalid" if valid_amount == 0 else "partial"
        self.trigger(DisputeResolved(dispute_id=self.id, invoice_id=self.invoice_id, customer_id=self.customer_id,
                                     currency=self.currency, credit_amount=quantize(valid_amount, self.currency),
                                     resolution=resolution, resolved_on=decided_on,
                                     rebill_amount=quantize(invalid_amount, self.currency) if invalid_amount else None),
                     at)

    def resolve(self, *, resolution: str, credit_amount: Decimal | None, resolved_on: date, at: datetime) -> None:
        """Close the dispute. credit: the whole disputed amount is credited (credit_amount may be
        omitted); partial_credit: more than nothing and less than the whole; rejected: nothing."""
        if not self.exists:
            raise DisputeRuleViolation(f"dispute {self.id} does not exist", "dispute_id")
        if self.status == "resolved":
            raise DisputeAlreadyResolved(
                f"dispute {self.id} was already resolved ({self.resolution}) on {self.resolved_on}", "dispute_id")
        if resolution not in RESOLUTIONS:
            raise DisputeRuleViolation(f"resolution must be one of {', '.join(RESOLUTIONS)}", "resolution")
        credit = resolution_credit(resolution, credit_amount, self.amount)
        if credit != ZERO:
            self._check_amount(credit, self.currency, "credit_amount")
        if self.opened_on and resolved_on < self.opened_on:
            raise DisputeRuleViolation("a dispute cannot be resolved before it was opened", "resolved_on")
        self.trigger(DisputeResolved(dispute_id=self.id, invoice_id=self.invoice_id, customer_id=self.customer_id,
                                     currency=self.currency, credit_amount=quantize(credit, self.currency),
                                     resolution=resolution, resolved_on=resolved_on), at)

    def withdraw(self, *, resolved_on: date, at: datetime) -> bool:
        """A deduction whose payment the bank returned no longer stands: the whole invoice is open
        again, so the short pay is not worked. Closed as `withdrawn` with no credit. Returns False
        when there is nothing to withdraw (not an open deduction)."""
        if not self.exists or self.kind != "deduction" or self.status == "resolved":
            return False
        self.trigger(DisputeResolved(dispute_id=self.id, invoice_id=self.invoice_id, customer_id=self.customer_id,
                                     currency=self.currency, credit_amount=quantize(ZERO, self.currency),
                                     resolution=WITHDRAWN, resolved_on=max(resolved_on, self.opened_on or resolved_on)),
                     at)
        return True

    @staticmethod
    def _check_amount(amount: Decimal, currency: str, field: str) -> None:
        if amount <= 0:
            raise DisputeRuleViolation(f"{field} must be positive", field)
        if quantize(amount, currency) != amount:
            raise DisputeRuleViolation(f"{currency} amounts have at most its minor unit's decimals", field)

    # -- state ----------------------------------------------------------------------------

    def when_DisputeOpened(self, e: DisputeOpened) -> None:
        self._opened("dispute", e.invoice_id, e.customer_id, e.currency, e.amount, e.reason_code, e.opened_on)
        self.line_number = e.line_number

    def when_DeductionOpened(self, e: DeductionOpened) -> None:
        self._opened("deduction", e.invoice_id, e.customer_id, e.currency, e.amount, e.reason_code, e.opened_on)
        self.payment_id = e.payment_id
        self.customer_reason_code = e.customer_reason_code
        self.external_reference = e.external_reference

    def when_DisputeReclassified(self, e: DisputeReclassified) -> None:
        self.reason_code = e.to_reason_code

    def when_DisputeAssigned(self, e: DisputeAssigned) -> None:
        self.owner = e.owner
        self.team = e.team

    def when_DisputeStatusChanged(self, e: DisputeStatusChanged) -> None:
        self.work_status = e.to_status

    def when_DisputeNoteAdded(self, e: DisputeNoteAdded) -> None:
        self.note_ids.add(e.note_id)

    def when_DisputeAttachmentAdded(self, e: DisputeAttachmentAdded) -> None:
        self.attachment_ids.add(e.attachment_id)

    def when_DisputeEscalated(self, e: DisputeEscalated) -> None:
        self.escalated_for.add(e.due_on)

    def _opened(self, kind, invoice_id, customer_id, currency, amount, reason_code, opened_on) -> None:
        self.kind = kind
        self.invoice_id = invoice_id
        self.customer_id = customer_id
        self.currency = currency
        self.amount = amount
        self.reason_code = reason_code
        self.opened_on = opened_on
        self.status = "open"
        self.team = team_for(reason_code)  # routed by reason until someone assigns it

    def when_DisputeResolved(self, e: DisputeResolved) -> None:
        self.status = "resolved"
        self.resolution = e.resolution
        self.credit_amount = e.credit_amount
        self.resolved_on = e.resolved_on
        self.rebill_amount = e.rebill_amount
        self.work_status = "resolved"


def resolution_credit(resolution: str, credit_amount: Decimal | None, disputed_amount: Decimal) -> Decimal:
    """The credit a resolution grants, checked against the disputed amount."""
    if resolution == "rejected":
        if credit_amount not in (None, ZERO):
            raise DisputeRuleViolation("a rejected dispute grants no credit: credit_amount must be 0", "credit_amount")
        return ZERO
    if resolution == "credit":
        if credit_amount is None:
            return disputed_amount
        if credit_amount != disputed_amount:
            raise DisputeRuleViolation(
                f"a full credit grants the disputed amount {disputed_amount}; use partial_credit for less",
                "credit_amount")
        return credit_amount
    if resolution == "partial_credit":
        if credit_amount is None:
            raise DisputeRuleViolation("a partial credit needs a credit_amount", "credit_amount")
        if credit_amount <= 0:
            raise DisputeRuleViolation("a partial credit must be positive; use rejected for none", "credit_amount")
        if credit_amount > disputed_amount:
            raise DisputeRuleViolation(
                f"credit {credit_amount} exceeds the disputed amount {disputed_amount}", "credit_amount")
        if credit_amount == disputed_amount:
            raise DisputeRuleViolation("a partial credit is less than the disputed amount; use credit", "credit_amount")
        return credit_amount
    raise DisputeRuleViolation(f"resolution must be one of {', '.join(RESOLUTIONS)}", "resolution")
