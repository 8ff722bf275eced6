"""The collector's account page (pure): a payment plan's draft with its running total against the
balance of the invoices it covers, the worklist's ranking reasons in the reader's language, and
the account's timeline merged from the services' event-backed histories."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Iterable, Mapping

from services.workbench.domain.money import parse_amount

PLAN_ROWS = 6  # installment rows the form offers (collections takes up to 60)


@dataclass(frozen=True)
class PlanDraft:
    installments: list[dict[str, Any]]  # [{number, due_date, amount}] as collections takes them
    invoice_ids: list[str]
    planned: str                         # the installments' total
    owed: str                            # the open balance of the chosen invoices
    remaining: str                       # owed - planned (negative: the plan asks for too much)
    over: bool
    errors: dict[str, str]               # field -> why


def plan_draft(form: Mapping[str, Any], open_balances: Mapping[str, str], rows: int = PLAN_ROWS) -> PlanDraft:
    """Form fields `invoice_ids` (checked) and `due_<n>` / `amount_<n>` for n = 1..rows; a row with
    neither is skipped, the others are numbered 1, 2, 3... in the order given."""
    picked = list(form.getlist("invoice_ids")) if hasattr(form, "getlist") else list(form.get("invoice_ids") or [])
    invoice_ids = [i for i in picked if i in open_balances]
    owed = sum((parse_amount(open_balances[i]) or Decimal(0) for i in invoice_ids), Decimal(0))
    installments, errors, planned = [], {}, Decimal(0)
    for n in range(1, rows + 1):
        due = str(form.get(f"due_{n}") or "").strip()
        raw = str(form.get(f"amount_{n}") or "").strip()
        if not due and not raw:
            continue
        try:
            amount = parse_amount(raw)
        except ValueError:
            amount = None
        if amount is None or amount <= 0:
            errors[f"amount_{n}"] = "enter a positive amount"
            continue
        try:
            date.fromisoformat(due)
        except ValueError:
            errors[f"due_{n}"] = "enter a date"
            continue
        installments.append({"number": len(installments) + 1, "due_date": due, "amount": raw})
        planned += amount
    if not invoice_ids:
        errors["invoice_ids"] = "choose the invoices the plan covers"
    if not installments and not errors:
        errors["amount_1"] = "enter at least one installment"
    left = owed - planned
    return PlanDraft(installments=installments, invoice_ids=invoice_ids, planned=format(planned, "f"),
                     owed=format(owed, "f"), remaining=format(left, "f"), over=left < 0, errors=errors)


# -- the worklist's reasons in the reader's language ----------------------------------------------

REASONS = {
    "en": {
        "amount_past_due": "{amount} {currency} past due",
        "amount_past_due_family": "{amount} {currency} past due across {accounts} accounts",
        "oldest_days_past_due": "oldest invoice {days} days past due",
        "risk_score": "risk score {score}",
        "broken_commitments": "{count} broken promise(s) or plan(s)",
        "last_contact": "last contact {days} days ago",
        "never_contacted": "never contacted",
        "promise_due_today": "promise to pay due today",
        "follow_up_due": "follow-up date reached",
    },
    "fr": {
        "amount_past_due": "{amount} {currency} échus",
        "amount_past_due_family": "{amount} {currency} échus sur {accounts} comptes",
        "oldest_days_past_due": "facture la plus ancienne échue depuis {days} jours",
        "risk_score": "score de risque {score}",
        "broken_commitments": "{count} promesse(s) ou plan(s) rompu(s)",
        "last_contact": "dernier contact il y a {days} jours",
        "never_contacted": "jamais contacté",
        "promise_due_today": "promesse de paiement due aujourd'hui",
        "follow_up_due": "date de relance atteinte",
    },
}


def reasons(entry: Mapping[str, Any], lang: str, money: Any = None) -> list[str]:
    """The entry's ranking reasons said in `lang` from collections' reason_details (code, points,
    values); collections' English text when it sent no details or a code this does not know.
    money(amount, currency) formats amounts for the locale when given."""
    details = entry.get("reason_details")
    if not details:
        return list(entry.get("reasons") or [])
    words = REASONS.get(lang, REASONS["en"])
    out = []
    for i, d in enumerate(details):
        code, values = d.get("code"), dict(d.get("values") or {})
        if code == "amount_past_due" and int(values.get("accounts") or 1) > 1:
            code = "amount_past_due_family"
        pattern = words.get(code or "")
        if pattern is None:
            fallback = entry.get("reasons") or []
            out.append(fallback[i] if i < len(fallback) else str(code))
            continue
        if money is not None and "amount" in values:  # the amount with its currency, as the locale writes it
            values["amount"] = money(values["amount"], values.get("currency"))
            pattern = pattern.replace(" {currency}", "")
        points = d.get("points", "")
        if lang == "fr":
            points = str(points).replace(".", ",")
        out.append(f"{pattern.format(**values)} (+{points})")
    return out


# -- the timeline ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TimelineItem:
    on: str              # ISO date or datetime of the business fact
    source: str          # the service that recorded it
    what: str            # the event type (or the record's kind)
    ref: str
    actor: str | None
    amount: str | None
    currency: str | None
    note: str | None


def _day(value: Any) -> str:
    return str(value or "")


def timeline(collections_events: Iterable[Mapping[str, Any]], dispute_events: Iterable[Mapping[str, Any]],
             profile_changes: Iterable[Mapping[str, Any]], payments: Iterable[Mapping[str, Any]],
             contacts: Iterable[Mapping[str, Any]], limit: int = 200) -> list[TimelineItem]:
    """Everything that happened to the account, newest first: collections' events (promises,
    plans, notices, escalations, holds, write-offs, segment and collector), each dispute's
    events, invoicing's customer-master changes, the payments cash application received, and the
    contact log (a table, not events, in collections)."""
    items: list[TimelineItem] = []
    for e in collections_events:
        data = e.get("data") or {}
        items.append(TimelineItem(on=_day(e.get("occurred_at"))[:10], source="collections", what=e["event_type"],
                                  ref=str(data.get("promise_id") or data.get("plan_id") or data.get("write_off_id")
                                          or data.get("escalation_id") or data.get("notice_id")
                                          or data.get("hold_id") or ""),
                                  actor=e.get("actor"), amount=data.get("amount") or data.get("total_amount")
                                  or data.get("overdue_amount"), currency=data.get("currency"),
                                  note=data.get("reason") or data.get("summary")))
    for e in dispute_events:
        data = e.get("data") or {}
        items.append(TimelineItem(on=_day(e.get("occurred_at"))[:10], source="disputes", what=e["event_type"],
                                  ref=str(data.get("dispute_id") or ""), actor=e.get("actor"),
                                  amount=data.get("amount") or data.get("credit_amount"), currency=data.get("currency"),
                                  note=e.get("note")))
    for c in profile_changes:
        changed = sorted(k for k, v in c.items() if v is not None and k not in
                         ("version", "effective_on", "changed_by", "customer_id", "currency", "recorded_at"))
        items.append(TimelineItem(on=_day(c.get("effective_on")), source="invoicing", what="CustomerProfileChanged",
                                  ref=", ".join(changed), actor=c.get("changed_by"), amount=None, currency=None,
                                  note=None))
    for p in payments:
        items.append(TimelineItem(on=_day(p.get("value_date")), source="cash_application", what="PaymentReceived",
                                  ref=str(p.get("reference") or p.get("payment_id") or ""), actor=None,
                                  amount=p.get("amount"), currency=p.get("currency"), note=p.get("method")))
    for c in contacts:
        items.append(TimelineItem(on=_day(c.get("contacted_on")), source="collections", what=f"contact:{c.get('kind')}",
                                  ref=str(c.get("outcome") or ""), actor=c.get("collector_id"), amount=None,
                                  currency=None, note=c.get("note")))
    items = [i for i in items if i.on]
    items.sort(key=lambda i: i.on, reverse=True)  # stable: each source keeps its own order within a day
    return items[:limit]
