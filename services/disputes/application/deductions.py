"""Deductions as retailers take them: customers' code mappings, reclassification, assignment,
the validity decision and the retailer deduction report import. Plain functions of (connection,
command, metadata); the caller owns the transaction."""
from __future__ import annotations

import csv
import hashlib
import io
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import aggregate, eventstore
from shared.eventstore import ConcurrencyError, utc_midnight
from shared.money import MoneyError, exact_amount
from shared.problems import Conflict, NotFound, Unprocessable
from services.disputes.adapters import deductions as repo_d
from services.disputes.adapters import repository as repo
from services.disputes.domain.deduction_codes import CustomerDeductionCodes
from services.disputes.domain.model import Dispute, DisputeAlreadyResolved, DisputeRuleViolation
from services.disputes.domain.reason_codes import mapped_reason_code, normalise_customer_code

REPORT_FIELDS = ("deduction_number", "invoice_number", "amount", "reason_code", "deduction_date")
OPTIONAL_REPORT_FIELDS = ("payment_reference",)


def _problem(exc: DisputeRuleViolation) -> Exception:
    if isinstance(exc, DisputeAlreadyResolved):
        return Conflict(str(exc), field=exc.field, type_name="dispute-already-resolved",
                        title="The dispute is already resolved")
    return Unprocessable(str(exc), field=exc.field)


async def _load(conn: AsyncConnection, dispute_id: str, expected_version: int | None = None) -> Dispute:
    dispute = await aggregate.load(conn, Dispute, dispute_id)
    if not dispute.exists:
        raise NotFound(f"dispute {dispute_id} does not exist", field="dispute_id")
    if expected_version is not None and expected_version != dispute.version:
        raise ConcurrencyError(f"dispute {dispute_id} is at version {dispute.version}, not {expected_version}",
                               field="If-Match")
    return dispute


async def set_code_mapping(conn: AsyncConnection, customer_id: str, mappings: list[tuple[str, str]], on: date,
                           by: str, meta: dict[str, Any]) -> dict[str, str]:
    codes = await aggregate.load(conn, CustomerDeductionCodes, customer_id)
    try:
        codes.set_mapping(mappings=mappings, on=on, by=by, at=utc_midnight(on))
    except DisputeRuleViolation as exc:
        raise _problem(exc) from exc
    if codes.pending:
        await aggregate.save(conn, codes, meta)
        await repo_d.replace_code_mapping(conn, customer_id, codes.mapping)
    return codes.mapping


async def reclassify(conn: AsyncConnection, dispute_id: str, reason_code: str, on: date, by: str,
                     expected_version: int | None, meta: dict[str, Any]) -> dict[str, Any]:
    dispute = await _load(conn, dispute_id, expected_version)
    try:
        dispute.reclassify(reason_code=reason_code, on=on, by=by, at=utc_midnight(on))
    except DisputeRuleViolation as exc:
        raise _problem(exc) from exc
    await aggregate.save(conn, dispute, meta)
    await repo_d.update_dispute(conn, dispute.id, dispute.version, reason_code=dispute.reason_code,
                                due_on=dispute.due_on)
    return await repo.get_dispute(conn, dispute.id)


async def assign(conn: AsyncConnection, dispute_id: str, owner: str | None, team: str, on: date, by: str,
                 expected_version: int | None, meta: dict[str, Any]) -> dict[str, Any]:
    dispute = await _load(conn, dispute_id, expected_version)
    try:
        dispute.assign(owner=owner, team=team, on=on, by=by, at=utc_midnight(on))
    except DisputeRuleViolation as exc:
        raise _problem(exc) from exc
    await aggregate.save(conn, dispute, meta)
    await repo_d.update_dispute(conn, dispute.id, dispute.version, owner=dispute.owner, team=dispute.team)
    return await repo.get_dispute(conn, dispute.id)


@dataclass(frozen=True)
class DecideValidity:
    dispute_id: str
    valid_amount: Decimal
    invalid_amount: Decimal
    decided_on: date
    note: str | None = None
    expected_version: int | None = None


async def decide_validity(conn: AsyncConnection, cmd: DecideValidity, meta: dict[str, Any]) -> dict[str, Any]:
    dispute = await _load(conn, cmd.dispute_id, cmd.expected_version)
    try:
        dispute.decide_validity(valid_amount=cmd.valid_amount, invalid_amount=cmd.invalid_amount,
                                decided_on=cmd.decided_on, at=utc_midnight(cmd.decided_on))
    except DisputeRuleViolation as exc:
        raise _problem(exc) from exc
    await aggregate.save(conn, dispute, {**meta, **({"note": cmd.note} if cmd.note else {})})
    await repo.record_resolution(conn, dispute_id=dispute.id, resolution=dispute.resolution,
                                 credit_amount=dispute.credit_amount, resolved_on=cmd.decided_on, note=cmd.note,
                                 version=dispute.version)
    await repo_d.update_dispute(conn, dispute.id, dispute.version, rebill_amount=dispute.rebill_amount,
                                work_status="resolved")
    return await repo.get_dispute(conn, dispute.id)


async def timeline(conn: AsyncConnection, dispute_id: str) -> list[dict[str, Any]]:
    """Every step of the dispute as its stream recorded it: what happened, when, by whom."""
    stored = await eventstore.read_stream(conn, Dispute.stream_id_for(dispute_id))
    if not stored:
        raise NotFound(f"dispute {dispute_id} does not exist", field="dispute_id")
    return [{"version": e.version, "event_type": e.event_type, "occurred_at": e.occurred_at.date().isoformat(),
             "recorded_at": e.recorded_at.isoformat(), "actor": e.metadata.get("actor"),
             "note": e.metadata.get("note"), "data": e.payload} for e in stored]


def report_deduction_id(customer_id: str, deduction_number: str) -> str:
    """Deterministic: the same report line imported twice opens one deduction."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ledgerline:deduction-report:{customer_id}:{deduction_number}"))


async def import_report(conn: AsyncConnection, profile: dict[str, Any], content: str, by: str,
                        meta: dict[str, Any]) -> dict[str, Any]:
    """A retailer portal's deduction report, read with the profile's column mapping. Each line is
    all or nothing: it matches an open deduction of the same invoice and amount (the short pay
    cash application already saw), or opens a new deduction, or is reported with its errors.
    A line imported before (same deduction number) changes nothing."""
    columns: dict[str, str] = profile["columns"]
    customer_id = profile["customer_id"]
    reader = csv.DictReader(io.StringIO(content), delimiter=profile["delimiter"])
    missing = [columns[f] for f in REPORT_FIELDS if columns[f] not in (reader.fieldnames or [])]
    if missing:
        raise Unprocessable(f"the report lacks the profile's columns: {', '.join(missing)}", field="body")
    mapping = await repo_d.code_mapping(conn, customer_id)
    results = []
    for line_number, raw in enumerate(reader, start=2):
        async with conn.begin_nested():
            results.append(await _import_line(conn, line_number, raw, columns, profile["date_format"], customer_id,
                                              mapping, meta))
    counts = {status: sum(1 for r in results if r["status"] == status)
              for status in ("opened", "matched", "already_imported", "error")}
    return {"profile_id": profile["profile_id"], "customer_id": customer_id, "lines": len(results), **counts,
            "results": results}


async def _import_line(conn: AsyncConnection, line_number: int, raw: dict[str, str], columns: dict[str, str],
                       date_format: str, customer_id: str, mapping: dict[str, str],
                       meta: dict[str, Any]) -> dict[str, Any]:
    def value(field: str) -> str:
        return (raw.get(columns.get(field, ""), "") or "").strip()

    number = value("deduction_number")
    result: dict[str, Any] = {"line": line_number, "deduction_number": number, "invoice_number": value("invoice_number")}
    errors = []
    if not number:
        errors.append({"field": columns["deduction_number"], "reason": "no deduction number"})
    try:
        on = datetime.strptime(value("deduction_date"), date_format).date()
    except ValueError:
        errors.append({"field": columns["deduction_date"], "reason": f"not a date in the format {date_format}"})
    invoice = await repo_d.invoice_by_number(conn, customer_id, value("invoice_number"))
    if invoice is None:
        errors.append({"field": columns["invoice_number"], "reason": f"no invoice {value('invoice_number')!r} of "
                                                                      f"customer {customer_id}"})
    amount = None
    try:
        amount = Decimal(value("amount").replace(",", "").lstrip("-").replace("$", ""))
        if invoice is not None:
            amount = exact_amount(amount, invoice["currency"].strip())
        if amount <= 0:
            raise MoneyError("must be positive")
    except (InvalidOperation, MoneyError) as exc:
        errors.append({"field": columns["amount"], "reason": f"not an amount: {exc}"})
    if errors:
        return {**result, "status": "error", "errors": errors}
    if await repo_d.dispute_by_reference(conn, customer_id, number) is not None:
        return {**result, "status": "already_imported",
                "dispute_id": await repo_d.dispute_by_reference(conn, customer_id, number)}
    customer_code = normalise_customer_code(value("reason_code")) or None
    matched = await repo_d.open_deduction_to_match(conn, invoice["invoice_id"], amount)
    if matched is not None:
        await repo_d.set_reference(conn, matched, number, customer_code)
        return {**result, "status": "matched", "dispute_id": matched}
    dispute = await aggregate.load(conn, Dispute, report_deduction_id(customer_id, number))
    reason_code = mapped_reason_code(customer_code, mapping)
    try:
        dispute.open_deduction(invoice_id=invoice["invoice_id"], customer_id=customer_id,
                               payment_id=value("payment_reference"), currency=invoice["currency"].strip(),
                               shortfall=amount, reason_code=reason_code, opened_on=max(on, invoice["issue_date"]),
                               at=utc_midnight(on), customer_reason_code=customer_code, external_reference=number)
    except DisputeRuleViolation as exc:
        return {**result, "status": "error", "errors": [{"field": exc.field, "reason": str(exc)}]}
    await aggregate.save(conn, dispute, meta)
    await repo.insert_dispute(conn, {
        "dispute_id": dispute.id, "kind": "deduction", "invoice_id": dispute.invoice_id,
        "customer_id": customer_id, "payment_id": dispute.payment_id or None, "currency": dispute.currency,
        "amount": dispute.amount, "reason_code": reason_code, "description": f"retailer deduction {number}",
        "opened_on": dispute.opened_on, "version": dispute.version, "team": dispute.team,
        "customer_reason_code": customer_code, "external_reference": number, "due_on": dispute.due_on})
    return {**result, "status": "opened", "dispute_id": dispute.id, "reason_code": reason_code}


async def change_status(conn: AsyncConnection, dispute_id: str, status: str, on: date, by: str, note: str | None,
                        expected_version: int | None, meta: dict[str, Any]) -> dict[str, Any]:
    dispute = await _load(conn, dispute_id, expected_version)
    try:
        dispute.change_status(status=status, on=on, by=by, at=utc_midnight(on))
    except DisputeRuleViolation as exc:
        raise _problem(exc) from exc
    await aggregate.save(conn, dispute, {**meta, **({"note": note} if note else {})})
    await repo_d.update_dispute(conn, dispute.id, dispute.version, work_status=dispute.work_status)
    return await repo.get_dispute(conn, dispute.id)


async def add_note(conn: AsyncConnection, dispute_id: str, note_id: str, text: str, on: date, by: str,
                   meta: dict[str, Any]) -> dict[str, Any]:
    dispute = await _load(conn, dispute_id)
    try:
        dispute.add_note(note_id=note_id, text=text, on=on, by=by, at=utc_midnight(on))
    except DisputeRuleViolation as exc:
        raise _problem(exc) from exc
    await aggregate.save(conn, dispute, meta)
    await repo_d.update_dispute(conn, dispute.id, dispute.version)
    await repo_d.add_note(conn, note_id=note_id, dispute_id=dispute.id, text_=text, author=by, added_on=on)
    return {"note_id": note_id, "dispute_id": dispute.id, "text": text, "author": by, "added_on": on.isoformat()}


async def add_attachment(conn: AsyncConnection, dispute_id: str, attachment_id: str, file_name: str,
                         content_type: str, kind: str, content: bytes, max_bytes: int, on: date, by: str,
                         meta: dict[str, Any]) -> dict[str, Any]:
    dispute = await _load(conn, dispute_id)
    digest = hashlib.sha256(content).hexdigest()
    try:
        dispute.add_attachment(attachment_id=attachment_id, file_name=file_name, content_type=content_type,
                               size_bytes=len(content), sha256=digest, kind=kind, max_bytes=max_bytes, on=on, by=by,
                               at=utc_midnight(on))
    except DisputeRuleViolation as exc:
        raise _problem(exc) from exc
    await aggregate.save(conn, dispute, meta)
    await repo_d.update_dispute(conn, dispute.id, dispute.version)
    await repo_d.add_attachment(conn, attachment_id=attachment_id, dispute_id=dispute.id, file_name=file_name,
                                content_type=content_type, kind=kind, content=content, sha256=digest, added_by=by,
                                added_on=on)
    return {"attachment_id": attachment_id, "dispute_id": dispute.id, "file_name": file_name,
            "content_type": content_type, "kind": kind, "size_bytes": len(content), "sha256": digest,
            "added_by": by, "added_on": on.isoformat()}


async def scheduled_escalation(engine: AsyncEngine, as_of: date) -> int:
    """The periodic escalation run (every disputes worker, `escalation_interval_seconds`): the same
    run as POST /v1/dispute-escalations as of today, with the system as the actor. Instances take
    turns on a transaction-scoped advisory lock, so two workers never escalate the same dispute;
    a run repeated the same day escalates nothing new."""
    async with engine.begin() as conn:
        await repo_d.lock_escalation_run(conn)
        escalated = await escalate_overdue(conn, as_of, {"correlation_id": str(uuid.uuid4()),
                                                         "actor": "system:dispute-escalation"})
    return len(escalated)


async def escalate_overdue(conn: AsyncConnection, as_of: date, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Every open dispute past its due date and not yet escalated for it: DisputeEscalated. Running
    it again for the same date escalates nothing new."""
    escalated = []
    for dispute_id in await repo_d.overdue_open_disputes(conn, as_of):
        dispute = await aggregate.load(conn, Dispute, dispute_id)
        if not dispute.escalate_if_overdue(as_of=as_of, at=utc_midnight(as_of)):
            continue
        event = dispute.pending[0][0]
        await aggregate.save(conn, dispute, meta)
        await repo_d.update_dispute(conn, dispute.id, dispute.version, escalated_on=as_of)
        escalated.append({"dispute_id": dispute.id, "customer_id": dispute.customer_id,
                          "reason_code": dispute.reason_code, "team": event.team, "owner": event.owner,
                          "due_on": event.due_on.isoformat(), "escalated_on": as_of.isoformat()})
    return escalated
