"""Request bodies and response shaping. Amounts are decimal strings."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.money import Amount, CurrencyCode, money_str
from services.collections.domain.model import MAX_GRACE_DAYS, MAX_PROMISED_INVOICES


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MakePromiseRequest(_Request):
    promise_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$",
                                   description="Your own reference; generated when omitted")
    customer_id: str = Field(min_length=1, max_length=64)
    invoice_ids: list[str] = Field(min_length=1, max_length=MAX_PROMISED_INVOICES)
    amount: Amount = Field(description="Promised amount, e.g. \"1500.00\"")
    currency: CurrencyCode
    promise_date: date = Field(description="The day the customer promised to pay by")
    made_on: date | None = Field(default=None, description="The day the promise was made; defaults to today")
    grace_days: int | None = Field(default=None, ge=0, le=MAX_GRACE_DAYS,
                                   description="Days after the promise date a payment still keeps it; "
                                               "defaults to the service's promise_grace_days")


class EvaluatePromisesRequest(_Request):
    as_of: date | None = Field(default=None, description="Judge promises as of this day; defaults to today")


def promise_out(row: dict[str, Any]) -> dict[str, Any]:
    currency = row["currency"].strip()

    def money(value: Any) -> str | None:
        return money_str(value, currency)

    def day(value: date | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "promise_id": row["promise_id"],
        "customer_id": row["customer_id"],
        "invoice_ids": list(row["invoice_ids"] or []),
        "currency": currency,
        "amount": money(row["amount"]),
        "promise_date": day(row["promise_date"]),
        "made_on": day(row["made_on"]),
        "grace_days": row["grace_days"],
        "window_ends_on": day(row["promise_date"] + timedelta(days=row["grace_days"])),
        "status": row["status"],
        "paid_amount": money(row["paid_amount"]),
        "shortfall": money(row["shortfall"]),
        "kept_on": day(row["kept_on"]),
        "broken_on": day(row["broken_on"]),
        "version": row["version"],
    }


def evaluation_out(evaluation: Any) -> dict[str, Any]:
    return {"as_of": evaluation.as_of.isoformat(),
            "kept": [promise_out(p) for p in evaluation.kept],
            "broken": [promise_out(p) for p in evaluation.broken]}


# -- accounts, strategies, dunning ----------------------------------------------------------

_ID = r"^[A-Za-z0-9._:-]+$"
Channel = Literal["email", "letter", "call_task"]


class CustomerProfileRequest(_Request):
    language: Literal["en", "fr"] | None = None
    time_zone: str | None = Field(default=None, max_length=64, description="IANA zone, e.g. Europe/Paris")
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    postal_address: str | None = Field(default=None, max_length=500)
    customer_type: str | None = Field(default=None, max_length=40, pattern=r"^[a-z0-9_-]+$")
    do_not_contact: bool | None = None
    consent: dict[Channel, bool] | None = Field(default=None, description="false withdraws consent for a channel")


class StrategyAssignmentRequest(_Request):
    strategy_id: str | None = Field(default=None, max_length=64, description="null: the default strategy")
    paused: bool = False


class CollectorRequest(_Request):
    collector_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    assigned_on: date | None = None


class StepIn(_Request):
    step_id: str
    day_offset: int
    channel: str
    template: str | None = None
    min_amount: str | None = Field(default=None, description="decimal string; the invoice's open balance must reach it")
    segments: list[str] = []
    exclude_disputed: bool = True
    escalate_to: str | None = Field(default=None, max_length=64)


class StrategyRequest(_Request):
    strategy_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    name: str = Field(min_length=1, max_length=200)
    steps: list[StepIn] = Field(min_length=1)


class StrategyVersionRequest(_Request):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    steps: list[StepIn] = Field(min_length=1)


class CompliancePolicyRequest(_Request):
    max_attempts: int = Field(default=7, ge=1, le=100)
    window_days: int = Field(default=7, ge=1, le=90)
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)


class DailyRunRequest(_Request):
    as_of: date | None = Field(default=None, description="Run as of this day; defaults to today")
    run_at: datetime | None = Field(default=None, description="The instant quiet hours are judged at; "
                                                              "defaults to now (today) or the configured time")


class ContactRequest(_Request):
    customer_id: str = Field(min_length=1, max_length=64)
    collector_id: str | None = Field(default=None, max_length=64)
    kind: Literal["call", "email", "letter", "sms", "note", "meeting"]
    outcome: Literal["reached", "voicemail", "promised", "refused", "disputed", "wrong_contact"] | None = None
    note: str | None = Field(default=None, max_length=2000)
    contacted_on: date | None = None
    next_follow_up_on: date | None = None


class InstallmentIn(_Request):
    number: int = Field(ge=1)
    due_date: date
    amount: Amount


class PaymentPlanRequest(_Request):
    plan_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=_ID)
    customer_id: str = Field(min_length=1, max_length=64)
    invoice_ids: list[str] = Field(min_length=1, max_length=MAX_PROMISED_INVOICES)
    currency: CurrencyCode
    installments: list[InstallmentIn] = Field(min_length=1, max_length=60)
    agreed_on: date | None = None
    grace_days: int | None = Field(default=None, ge=0, le=30)


class WriteOffRequest(_Request):
    write_off_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=_ID)
    invoice_id: str = Field(min_length=1, max_length=64)
    amount: Amount | None = Field(default=None, description="defaults to the whole open balance")
    reason: str = Field(min_length=1, max_length=500)
    requested_by: str = Field(min_length=1, max_length=64)
    requested_on: date | None = None


class WriteOffApprovalRequest(_Request):
    approved_by: str = Field(min_length=1, max_length=64)
    approved_on: date | None = None


class WriteOffRejectionRequest(_Request):
    rejected_by: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=500)
    rejected_on: date | None = None


class ApproverRequest(_Request):
    role: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_-]+$")


def after_sequence(cursor: str | None) -> int | None:
    """The created_seq a list cursor carries (lists here page by insertion order)."""
    from shared.pagination import decode_cursor
    from shared.problems import Problem

    after = decode_cursor(cursor)
    try:
        return int(after[0]) if after else None
    except (TypeError, ValueError, IndexError) as exc:
        raise Problem("cursor is not one this API returned", field="cursor") from exc


def jsonable(row: dict[str, Any], money: tuple[str, ...] = (), drop: tuple[str, ...] = ("created_seq",)) -> dict[str, Any]:
    """A read-model row as JSON: dates as ISO strings, money as strings at the row's currency."""
    currency = (row.get("currency") or "").strip()
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in drop:
            continue
        if key in money and value is not None:
            out[key] = money_str(value, currency) if currency else format(Decimal(value).normalize(), "f")
        elif isinstance(value, (date, datetime, time)):
            out[key] = value.isoformat()
        elif isinstance(value, Decimal):
            out[key] = format(value, "f")
        elif key == "currency" and value:
            out[key] = value.strip()
        else:
            out[key] = value
    return out


class EscalationRequest(_Request):
    customer_id: str = Field(min_length=1, max_length=64)
    escalated_to: str | None = Field(default=None, max_length=64, description="default: the AR manager setting")
    reason: str = Field(min_length=1, max_length=500, description="why the collector escalates; ends the summary")
    recommended_action: Literal["call_manager", "legal", "write_off", "credit_hold", "payment_plan"] | None = None
    escalated_on: date | None = None
