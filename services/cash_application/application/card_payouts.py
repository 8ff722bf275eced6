"""Importing a card processor's payout report (Stripe, Adyen) and tying each payout to the bank
credit that carried it.

In one transaction, all of it or nothing: each charge becomes a receipt (method `card`) *gross*
of fees, matched to the invoice the ERP named on the charge (its metadata, e.g. Stripe's
`payment_metadata[invoice_number]`, Adyen's Merchant Reference) by the matching engine's
structured-remittance rule; each fee is a ProcessorFeeRecorded on the payout's stream; a refund is
booked against its charge (refunded from unapplied cash, reversing the charge's applications when
that is not enough); a chargeback returns its charge (reason code CHARGEBACK) and emits
ChargebackReceived, from which disputes opens a deduction; a chargeback reversal is a new receipt.

Each payout must arrive as one bank credit of exactly its net (charges - fees - refunds -
chargebacks ...). When the bank line came first it was posted as an unidentified receipt: the
report finds it (same currency and amount, booked around the arrival date, its text naming the
processor or the payout) and returns that receipt (reason code CARD_PAYOUT: its cash is the
charges', now posted gross), tying the line to the payout. When the report came first, the bank
import recognises the line as the payout instead of posting it (see claim_payout_lines).

Idempotent: the same report (content hash) answers the first import; a payout already imported
from another report is listed under duplicate_payouts; a charge already posted is skipped."""
from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import aggregate
from shared.eventstore import utc_midnight
from shared.money import money_str
from shared.problems import ValidationFailed
from services.cash_application.adapters import card_payout_store as store
from services.cash_application.adapters import repository as repo
from services.cash_application.adapters.card_reports import PROCESSORS, parse_card_report
from services.cash_application.application import posting
from services.cash_application.application.imports import (
    FileRejectedProblem, _parse_pool, open_invoice_of, policy_of)
from services.cash_application.application.posting import project_saved
from services.cash_application.domain.card_payouts import (
    CHARGE, CHARGEBACK, CHARGEBACK_REVERSAL, FEE, REFUND, CardPayout, CardTransaction, ParsedCardReport,
    mentions_payout, payout_breakdown)
from services.cash_application.domain.matching import Matcher, Receipt
from services.cash_application.domain.model import (
    UNIDENTIFIED_CUSTOMER, CardSettlement, CashApplicationRuleViolation, Payment)
from services.cash_application.domain.receipts import BankLine, BankStatement, FileRejected, RemittanceItem
from services.cash_application.settings import CashApplicationSettings

FEE_TYPES = {CHARGE: "processing", REFUND: "refund", CHARGEBACK: "dispute", CHARGEBACK_REVERSAL: "dispute"}


@dataclass(frozen=True)
class ImportCardReport:
    content: bytes
    processor: str
    invoice_column: str | None = None
    file_name: str | None = None


async def parse(cmd: ImportCardReport, settings: CashApplicationSettings) -> ParsedCardReport:
    if cmd.processor not in PROCESSORS:
        raise ValidationFailed(f"processor must be one of {', '.join(PROCESSORS)}", extra={
            "errors": [{"field": "processor", "reason": f"one of {', '.join(PROCESSORS)}"}]})
    if not cmd.content:
        raise FileRejectedProblem("the file is empty", field="file")
    column = cmd.invoice_column or settings.card_invoice_columns.get(cmd.processor)
    work = functools.partial(parse_card_report, cmd.content, cmd.processor, invoice_column=column)
    try:
        if settings.parse_workers > 0:
            return await asyncio.get_running_loop().run_in_executor(_parse_pool(settings.parse_workers, settings.import_worker_nice), work)
        return work()
    except FileRejected as exc:
        raise FileRejectedProblem(str(exc), extra={"errors": [{"field": exc.where, "reason": exc.reason}]}) from exc


def payment_id_of(processor: str, transaction_id: str) -> str:
    """A charge's payment is named after the processor's charge id: posted once, whatever report
    brings it again."""
    return f"card-{processor}-{transaction_id}"


async def import_card_report(conn: AsyncConnection, cmd: ImportCardReport, parsed: ParsedCardReport,
                             settings: CashApplicationSettings, meta: dict[str, Any]) -> dict[str, Any]:
    content_hash = hashlib.sha256(cmd.content).hexdigest()
    import_id = f"imp_{content_hash[:20]}"
    inserted = (await conn.execute(
        text("INSERT INTO bank_imports (import_id, content_hash, file_format, file_name) VALUES (:i, :h, :f, :n)"
             " ON CONFLICT (content_hash) DO NOTHING RETURNING 1"),
        {"i": import_id, "h": content_hash, "f": f"card:{parsed.processor}", "n": cmd.file_name})).first()
    if inserted is None:
        first = (await conn.execute(text("SELECT result FROM bank_imports WHERE content_hash = :h"),
                                    {"h": content_hash})).scalar_one()
        return {**(json.loads(first) if isinstance(first, str) else dict(first)), "replayed": True}
    await store.lock_payouts(conn)
    fresh: list[CardPayout] = []
    duplicates: list[dict[str, str]] = []
    for payout in parsed.payouts:
        key = f"{payout.processor}:{payout.payout_id}"
        breakdown = payout_breakdown(payout)
        if await store.claim_payout(conn, {
                "payout_id": key, "processor": payout.processor, "processor_payout_id": payout.payout_id,
                "import_id": import_id, "currency": payout.currency, "amount": payout.amount,
                "arrival_date": payout.arrival_date, "charges": breakdown["charges"],
                "fees": breakdown["fees"] + breakdown["standalone_fees"], "refunds": breakdown["refunds"],
                "chargebacks": breakdown["chargebacks"],
                "other": breakdown["other"] + breakdown["chargeback_reversals"]}):
            fresh.append(payout)
        else:
            duplicates.append({"payout": payout.payout_id, "imported_by": await store.payout_import(conn, key)})

    processor = parsed.processor
    receipts = [t for p in fresh for t in p.transactions if t.kind in (CHARGE, CHARGEBACK_REVERSAL)]
    posted = await store.existing_payments(conn, [payment_id_of(processor, t.transaction_id) for t in receipts])
    takebacks = [t for p in fresh for t in p.transactions if t.kind in (REFUND, CHARGEBACK)]
    earlier = {payment_id_of(processor, t.charge_id or "") for t in takebacks}
    # Lock, in invoice_id order, the invoices the charges name and those the charges refunded or
    # charged back had paid; then match the charges against them under the locks.
    named = await store.open_invoices_named(conn, [t.invoice_number for t in receipts if t.invoice_number])
    touched = {r["invoice_id"] for r in named}
    for payment_id in sorted(earlier & await store.existing_payments(conn, sorted(earlier))):
        touched.update(await repo.applied_invoice_ids(conn, payment_id))
    locked = await repo.lock_open_items_by_id(conn, sorted(touched))
    rows = [dict(r, open_balance=locked[r["invoice_id"]].open_balance) for r in named if r["invoice_id"] in locked]
    names, accounts = await repo.payer_aliases(conn)
    matcher = Matcher([open_invoice_of(r) for r in rows], await repo.customer_names(conn), name_aliases=names,
                      account_aliases=accounts, policy=policy_of(settings))

    threshold = settings.auto_apply_threshold
    new_payments: list[Payment] = []
    sources: list[dict[str, Any]] = []
    out: dict[str, list[dict[str, Any]]] = {"posted_charges": [], "posted_refunds": [], "posted_chargebacks": [],
                                            "needs_review": []}
    counts = {"charges": 0, "auto_applied": 0, "unapplied": 0, "charges_already_posted": 0, "refunds": 0,
              "chargebacks": 0, "fees": 0, "other_transactions": 0}
    for payout in fresh:
        for t in payout.transactions:
            if t.kind not in (CHARGE, CHARGEBACK_REVERSAL):
                continue
            payment_id = payment_id_of(processor, t.transaction_id)
            if payment_id in posted:
                counts["charges_already_posted"] += 1
                continue
            posted.add(payment_id)
            result = matcher.match(Receipt(
                amount=t.gross, currency=payout.currency, payer_name=t.payer_name, payer_account=None,
                customer_hint=t.customer_hint, text=t.description,
                remittance=(RemittanceItem(reference=t.invoice_number, paid_amount=t.gross),) if t.invoice_number else ()))
            payment = Payment(payment_id)
            try:
                payment.receive_matched(
                    customer_id=result.customer_id or UNIDENTIFIED_CUSTOMER, amount=t.gross, currency=payout.currency,
                    value_date=t.created, method="card", reference=t.charge_id or t.transaction_id, result=result,
                    auto_apply=bool(result.allocations) and result.confidence >= threshold,
                    at=utc_midnight(t.created), locked=locked)
            except CashApplicationRuleViolation as exc:
                raise FileRejectedProblem(f"{t.position}: {exc}", extra={
                    "errors": [{"field": t.position, "reason": str(exc)}]}) from exc
            if payment.applications:
                matcher.commit(result)
            new_payments.append(payment)
            sources.append(posting.source_row(
                payment, result, import_id=import_id, position=t.position, bank_reference=t.transaction_id,
                payer_name=t.payer_name, payer_account=None,
                remittance_text=" | ".join(filter(None, [t.description, t.invoice_number])) or None))
            counts["charges"] += 1
            counts["auto_applied" if payment.unapplied_amount == 0 else "unapplied"] += 1
            out["posted_charges"].append({
                "payment_id": payment.id, "position": t.position, "charge_id": t.charge_id,
                "invoice_number": t.invoice_number, "amount": money_str(t.gross, payout.currency),
                "fee": money_str(t.fee, payout.currency), "customer_id": result.customer_id,
                "status": "applied" if payment.unapplied_amount == 0 else (
                    "partially_applied" if payment.applications else "unapplied"),
                "applications": [{"invoice_id": a.invoice_id, "amount": money_str(a.amount, payout.currency),
                                  "rule": a.rule} for a in payment.applications.values()],
                "reason": payment.unapplied_reasons[-1] if payment.unapplied_reasons else None})
    new_streams = await aggregate.save_new(conn, new_payments, meta)
    from services.cash_application.projections import payments as payments_projection

    await payments_projection.project_new_payments(conn, new_streams)
    await posting.record_sources(conn, sources)

    for payout in fresh:
        for t in payout.transactions:
            if t.kind == REFUND:
                await _refund(conn, processor, payout, t, meta, out, counts)
            elif t.kind == CHARGEBACK:
                await _charge_back(conn, processor, payout, t, meta, out, counts)
            elif t.kind not in (CHARGE, CHARGEBACK_REVERSAL, FEE):
                counts["other_transactions"] += 1
        counts["fees"] += await _record_fees(conn, processor, payout, meta)

    payouts_out = []
    for payout in fresh:
        payouts_out.append({**_payout_out(payout), **await _tie_to_earlier_line(conn, payout, meta)})
    result = {"import_id": import_id, "file_format": f"card:{processor}", "file_name": cmd.file_name,
              "processor": processor, "payouts": payouts_out, "duplicate_payouts": duplicates, **counts, **out,
              "replayed": False}
    await repo.record_import_result(conn, import_id, json.dumps(result, default=str), result)
    return result


async def _refund(conn: AsyncConnection, processor: str, payout: CardPayout, t: CardTransaction,
                  meta: dict[str, Any], out: dict[str, list], counts: dict[str, int]) -> None:
    payment = await aggregate.load(conn, Payment, payment_id_of(processor, t.charge_id or ""))
    entry = {"position": t.position, "refund_id": t.transaction_id, "charge_id": t.charge_id,
             "amount": money_str(-t.gross, payout.currency), "payment_id": payment.id if payment.exists else None}
    if not payment.exists:
        out["needs_review"].append({**entry, "reason": f"refund of charge {t.charge_id}, which no report brought"})
        return
    try:
        payment.refund_to_card(refund_id=t.transaction_id, amount=-t.gross, on=t.created,
                               reason=f"{processor} refund {t.transaction_id}", at=utc_midnight(t.created))
    except CashApplicationRuleViolation as exc:
        out["needs_review"].append({**entry, "reason": str(exc)})
        return
    await project_saved(conn, payment, meta)
    counts["refunds"] += 1
    out["posted_refunds"].append({**entry, "charge_unapplied_amount": money_str(payment.unapplied_amount, payout.currency)})


async def _charge_back(conn: AsyncConnection, processor: str, payout: CardPayout, t: CardTransaction,
                       meta: dict[str, Any], out: dict[str, list], counts: dict[str, int]) -> None:
    payment = await aggregate.load(conn, Payment, payment_id_of(processor, t.charge_id or ""))
    entry = {"position": t.position, "chargeback_id": t.transaction_id, "charge_id": t.charge_id,
             "amount": money_str(-t.gross, payout.currency), "reason": t.reason,
             "payment_id": payment.id if payment.exists else None}
    if not payment.exists:
        out["needs_review"].append({**entry, "reason": f"chargeback of charge {t.charge_id}, which no report brought"})
        return
    invoices = [a.invoice_id for a in payment.applications.values()]
    try:
        payment.charge_back(chargeback_id=t.transaction_id, amount=-t.gross, on=t.created, processor=processor,
                            processor_reason=t.reason, reference=t.transaction_id, at=utc_midnight(t.created))
    except CashApplicationRuleViolation as exc:
        out["needs_review"].append({**entry, "reason": str(exc)})
        return
    await project_saved(conn, payment, meta)
    counts["chargebacks"] += 1
    out["posted_chargebacks"].append({**entry, "invoices_reopened": invoices})


async def _record_fees(conn: AsyncConnection, processor: str, payout: CardPayout, meta: dict[str, Any]) -> int:
    """Every fee of the payout as its own adjustment event: the fee on each transaction, and the
    fees the processor charged on their own (FEE rows)."""
    settlement = await aggregate.load(conn, CardSettlement, f"{processor}:{payout.payout_id}")
    customers = await repo.payment_customers(conn, [payment_id_of(processor, t.charge_id or t.transaction_id)
                                                    for t in payout.transactions if t.kind != FEE])
    for t in payout.transactions:
        if t.kind == FEE:
            amount, fee_type, payment_id = -t.gross, "standalone", ""
        elif t.fee != 0:
            amount, fee_type = t.fee, FEE_TYPES.get(t.kind, "other")
            payment_id = payment_id_of(processor, t.charge_id or t.transaction_id)
        else:
            continue
        settlement.record_fee(fee_id=f"{t.transaction_id}:fee", processor=processor, payout_id=payout.payout_id,
                              payment_id=payment_id if payment_id in customers else "",
                              customer_id=customers.get(payment_id, ""), amount=amount, currency=payout.currency,
                              on=t.created, fee_type=fee_type, reference=t.transaction_id, at=utc_midnight(t.created))
    recorded = len(settlement.pending)
    await aggregate.save(conn, settlement, meta)
    return recorded


def _payout_out(payout: CardPayout) -> dict[str, Any]:
    currency = payout.currency
    return {"payout_id": payout.payout_id, "currency": currency, "arrival_date": payout.arrival_date.isoformat(),
            "transactions": len(payout.transactions),
            **{k: money_str(v, currency) for k, v in payout_breakdown(payout).items()}}


async def _tie_to_earlier_line(conn: AsyncConnection, payout: CardPayout, meta: dict[str, Any]) -> dict[str, Any]:
    """The bank line came first: it posted an unidentified receipt of the payout's amount. That
    receipt is returned (its cash is the charges', now posted gross) and the line tied to the
    payout. A receipt a person already applied is left alone and reported."""
    key = f"{payout.processor}:{payout.payout_id}"
    for line in await store.receipt_lines_for_payout(conn, currency=payout.currency, amount=payout.amount,
                                                     arrival=payout.arrival_date):
        said = " ".join(filter(None, [line["bank_reference"], line["payer_name"], line["remittance_text"]]))
        if not mentions_payout(said, payout.payout_id, payout.processor) or line["returned_on"] is not None:
            continue
        if Decimal(line["applied_amount"]) or Decimal(line["refunded_amount"]):
            return {"bank_line": None, "warning": f"bank line {line['import_id']} {line['position']} looks like this"
                                                  f" payout but its receipt {line['payment_id']} was applied by a"
                                                  " person: reverse it, then import the report again"}
        payment = await aggregate.load(conn, Payment, line["payment_id"])
        payment.return_payment("CARD_PAYOUT", f"{payout.processor} payout {payout.payout_id}: its charges are"
                               " posted gross from the processor's report", line["value_date"],
                               utc_midnight(line["value_date"]))
        await project_saved(conn, payment, meta)
        await store.tie_line(conn, payout_id=key, import_id=line["import_id"], position=line["position"],
                             value_date=line["value_date"], superseded_payment_id=payment.id)
        return {"bank_line": {"import_id": line["import_id"], "position": line["position"],
                              "value_date": line["value_date"].isoformat(), "superseded_payment_id": payment.id}}
    return {"bank_line": None}


async def claim_payout_lines(conn: AsyncConnection, statements: Sequence[BankStatement]) -> dict[int, str]:
    """The report came first: which credit lines of a bank file carry a payout already imported
    (same currency and amount, booked around its arrival date, the text naming the processor or
    the payout)? Answers {id(line): payout key}; each payout is claimed by one line."""
    candidates = await asyncio.to_thread(  # every line of a large file: off the event loop
        lambda: [(s, line) for s in statements for line in s.lines if line.is_receipt
                 and any(mentions_payout(_said(line), "\x00", p) for p in PROCESSORS)])
    if not candidates:
        return {}
    await store.lock_payouts(conn)
    payouts = await store.unreconciled_payouts(conn, [(s.currency, line.amount) for s, line in candidates])
    claimed: dict[int, str] = {}
    taken: set[str] = set()
    for statement, line in candidates:
        for p in payouts:
            if p["payout_id"] in taken or p["currency"].strip() != statement.currency:
                continue
            if Decimal(p["amount"]) != line.amount:
                continue
            if not (p["arrival_date"] - store.EARLIEST <= line.value_date <= p["arrival_date"] + store.LATEST):
                continue
            if not mentions_payout(_said(line), p["processor_payout_id"], p["processor"]):
                continue
            claimed[id(line)] = p["payout_id"]
            taken.add(p["payout_id"])
            break
    return claimed


def _said(line: BankLine) -> str:
    return " ".join(filter(None, [line.bank_reference, line.payer_name, line.text]))
