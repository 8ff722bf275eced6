"""Request bodies and response shapes. Amounts travel as decimal strings at the currency's
minor unit; a JSON number is refused."""
from __future__ import annotations

from datetime import date
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.money import Amount, CurrencyCode, MoneyError, exact_amount, money_str, to_str
from shared.problems import ValidationFailed
from services.cash_application.domain.model import PAYMENT_METHODS, UNIDENTIFIED_CUSTOMER

PaymentMethod = Literal["ach", "wire", "check", "card", "cash", "other"]
assert set(get_args(PaymentMethod)) == set(PAYMENT_METHODS)  # the API offers exactly the domain's methods

_ID = r"^[A-Za-z0-9._:-]+$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class RemittanceLineRequest(_Request):
    invoice_id: str | None = Field(default=None, min_length=1, max_length=64)
    invoice_number: str | None = Field(default=None, min_length=1, max_length=64,
                                       description="The invoice number as printed; used when invoice_id is absent")
    amount: Amount = Field(description="What the customer pays on this invoice, decimal string")
    reason_code: str | None = Field(default=None, min_length=1, max_length=64,
                                    description="The customer's reason for paying less (travels with the short pay)")

    @model_validator(mode="after")
    def _names_an_invoice(self) -> "RemittanceLineRequest":
        if not self.invoice_id and not self.invoice_number:
            raise ValueError("a remittance line names an invoice_id or an invoice_number")
        return self


class ReceivePaymentRequest(_Request):
    payment_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=_ID,
                                   description="Your own payment id; generated when omitted")
    customer_id: str = Field(min_length=1, max_length=64)
    amount: Amount = Field(description="Decimal string in the payment's currency")
    currency: CurrencyCode
    value_date: date
    method: PaymentMethod
    reference: str | None = Field(default=None, min_length=1, max_length=200,
                                  description="Check number, wire reference, ...")
    remittance: list[RemittanceLineRequest] = Field(default_factory=list, max_length=1000)

    def check_amounts(self) -> None:
        """Amounts must be positive and exact in the payment's currency; every offending field
        is named (the currency is only known once the body parsed, hence not a field validator)."""
        errors: list[dict[str, str]] = []

        def check(value: Any, field: str) -> None:
            try:
                exact = exact_amount(value, self.currency)
            except MoneyError as exc:
                errors.append({"field": field, "reason": str(exc)})
                return
            if exact <= 0:
                errors.append({"field": field, "reason": "amount must be positive"})

        check(self.amount, "amount")
        for i, line in enumerate(self.remittance):
            check(line.amount, f"remittance.{i}.amount")
        if errors:
            detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
            raise ValidationFailed(detail, extra={"errors": errors})


class ApplicationRequest(_Request):
    invoice_id: str = Field(min_length=1, max_length=64)
    amount: Amount = Field(description="Decimal string in the payment's currency")


class ApplyCashRequest(_Request):
    applications: list[ApplicationRequest] = Field(min_length=1, max_length=500)
    applied_on: date | None = Field(default=None, description="Defaults to today")


class ReapplyCashRequest(ApplyCashRequest):
    note: str | None = Field(default=None, max_length=500,
                             description="Why it is re-applied: on each PaymentUnapplied (reason `reapplied`)")


class ReverseRequest(_Request):
    application_ids: list[str] = Field(default_factory=list, max_length=500,
                                       description="Applications to reverse; all of the payment's when empty")
    reversed_on: date | None = None
    note: str | None = Field(default=None, max_length=500,
                             description="Why they are reversed: on each PaymentUnapplied")


class ReturnRequest(_Request):
    reason_code: str = Field(min_length=1, max_length=32, description="NSF, R01, WIRE_RECALL, ...")
    reason: str | None = Field(default=None, max_length=500)
    returned_on: date | None = None


def money(value: Any, currency: str) -> str:
    return money_str(value, currency)


def open_item_out(row: dict[str, Any]) -> dict[str, Any]:
    currency = row["currency"].strip()
    open_balance = row["open_balance"]
    return {
        "invoice_id": row["invoice_id"],
        "invoice_number": row["invoice_number"],
        "customer_id": row["customer_id"],
        "currency": currency,
        "issue_date": row["issue_date"].isoformat(),
        "due_date": row["due_date"].isoformat(),
        "total_amount": money(row["total_amount"], currency),
        "credited_amount": money(row["credited_amount"], currency),
        "applied_amount": money(row["applied_amount"], currency),
        "written_off_amount": money(row["written_off_amount"], currency),
        "adjusted_amount": money(row["adjusted_amount"], currency),
        "open_balance": money(open_balance, currency),
        "status": "open" if open_balance > 0 else "closed",
    }


def payment_out(row: dict[str, Any]) -> dict[str, Any]:
    currency = row["currency"].strip()
    applied, unapplied = row["applied_amount"], row["unapplied_amount"]
    if row.get("returned_on"):
        status = "returned"
    else:
        status = "unapplied" if applied == 0 else ("applied" if unapplied == 0 else "partially_applied")
        if status == "unapplied" and unapplied == 0 and row.get("refunded_amount"):
            status = "refunded"
    return {
        "payment_id": row["payment_id"],
        "customer_id": row["customer_id"],
        "customer_identified": row["customer_id"] != UNIDENTIFIED_CUSTOMER,
        "amount": money(row["amount"], currency),
        "currency": currency,
        "value_date": row["value_date"].isoformat(),
        "method": row["method"],
        "reference": row["reference"],
        "status": status,
        "applied_amount": money(applied, currency),
        "unapplied_amount": money(unapplied, currency),
        "refunded_amount": money(row.get("refunded_amount", 0), currency),
        "unapplied_reason": row["unapplied_reason"],
        "applications": [
            {"application_id": a["application_id"], "invoice_id": a["invoice_id"],
             "customer_id": a["customer_id"],  # the invoice's: a parent account pays for its children
             "amount": money(a["amount"], currency), "rule": a["rule"], "confidence": to_str(a["confidence"]),
             "reversed_on": a["reversed_on"].isoformat() if a["reversed_on"] else None,
             "reversal_reason": a["reversal_reason"]}
            for a in row["applications"]
        ],
        "short_pays": [
            {"invoice_id": s["invoice_id"], "open_amount": money(s["open_amount"], currency),
             "paid_amount": money(s["paid_amount"], currency), "shortfall": money(s["shortfall"], currency),
             "reason_code": s["reason_code"]}
            for s in row["short_pays"]
        ],
        "written_off_amount": money(row.get("written_off_amount") or 0, currency),
        "write_offs": [
            {"adjustment_id": w["write_off_id"], "application_id": w["application_id"],
             "invoice_id": w["invoice_id"], "amount": money(w["amount"], currency), "reason_code": w["reason_code"],
             "reversed_on": w["reversed_on"].isoformat() if w["reversed_on"] else None,
             "reversal_reason": w["reversal_reason"]}
            for w in row.get("write_offs", [])
        ],
        "returned_on": row["returned_on"].isoformat() if row.get("returned_on") else None,
        "return_reason_code": row.get("return_reason_code"),
        "source": None if not row.get("import_id") else {
            "import_id": row["import_id"], "position": row["statement_position"],
            "bank_reference": row["bank_reference"], "payer_name": row["payer_name"],
            "payer_account": row["payer_account"], "remittance": row["remittance_text"],
            "explanation": row["explanation"]},
        "match_reason": row.get("match_reason"),
        "suggestions": (row.get("suggestions") or []) if unapplied > 0 and not row.get("returned_on") else [],
        "version": row["version"],
    }
