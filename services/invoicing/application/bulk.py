"""Bulk intake for ERPs: many invoices in one request, each issued or refused on its own (all or
nothing per invoice), idempotent per invoice (its invoice_id issued again with the same content
answers `already_issued`), and CSV/XLSX files read into the same items.

Set-based: every item is parsed and decided in memory against state read in a few queries (the
invoices and invoice numbers that exist, the customers' streams), then the issued ones are
written with one statement for their events and one for their read-model rows, and read back
with one query. An item refused by a rule writes nothing, so each invoice is whole or absent.
If a concurrent request took one of the batch's invoice ids or numbers between the reads and
the writes, the batch's writes are rolled back to a savepoint and the items are issued one by
one (each in its own savepoint), which decides each against the then committed state.

Credit limits apply per item as on POST /v1/invoices: the batch's customers and their parents
are locked first (handlers.credit_chains), and items are decided in batch order, each against
the exposure left by those before it, so an item that would take its customer (or a parent)
over its limit is refused on its own (`error`, field customer_id, with the levels exceeded)
unless it carries its own credit_override, while the others are issued."""
from __future__ import annotations

import csv
import io
from collections import OrderedDict
from decimal import Decimal
from typing import Any, Callable

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import aggregate
from shared.eventstore import ConcurrencyError, utc_midnight
from shared.money import MoneyError, exact_amount
from shared.problems import Problem
from services.invoicing.adapters import repository as repo
from services.invoicing.application import handlers
from services.invoicing.application.documents import delivery_rows
from services.invoicing.domain.model import CreditLimitRefused, Invoice, InvoicingRuleViolation

MAX_ITEMS = 5000
FILE_COLUMNS = ("invoice_number", "customer_id", "issue_date", "description", "quantity", "unit_price")
OPTIONAL_FILE_COLUMNS = ("invoice_id", "due_date", "currency", "credit_override_approved_by",
                         "credit_override_reason")


def _errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    return [{"field": prefix + ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()]


def _same(existing: dict[str, Any], item: Any, total: Decimal) -> bool:
    return (existing["customer_id"] == item.customer_id and existing["issue_date"] == item.issue_date
            and (item.invoice_number is None or existing["invoice_number"] == item.invoice_number)
            and Decimal(existing["total_amount"]) == total)


async def issue_batch(conn: AsyncConnection, raw_items: list[Any], meta: dict[str, Any], *,
                      parse: Callable[[Any], Any], invoice_out: Callable[[dict], dict]) -> dict[str, Any]:
    """parse: the API's request model (validates one item, raising ValidationError); invoice_out:
    the API's response shape."""
    if not raw_items:
        raise Problem("a batch needs at least one invoice", field="invoices", status=422)
    if len(raw_items) > MAX_ITEMS:
        raise Problem(f"a batch holds at most {MAX_ITEMS} invoices", field="invoices", status=422)
    try:
        async with conn.begin_nested():
            results = await _issue_set(conn, raw_items, meta, parse, invoice_out)
    except _Raced:
        results = [{"index": index, **await _issue_one(conn, raw, meta, parse, invoice_out)}
                   for index, raw in enumerate(raw_items)]
    counts = {s: sum(1 for r in results if r["status"] == s) for s in ("issued", "already_issued", "error")}
    return {"count": len(results), **counts, "results": results}


class _Raced(Exception):
    """A concurrent request wrote one of the batch's invoices or numbers: redo it item by item."""


def _existing_result(existing: dict[str, Any], item: Any, invoice_out) -> dict[str, Any]:
    currency = existing["currency"].strip()
    try:
        total = sum((exact_amount(line.quantity * line.unit_price, currency) for line in item.lines), Decimal(0))
        total += sum((tax.amount for tax in item.taxes), Decimal(0))
    except MoneyError:
        total = Decimal(-1)
    if _same(existing, item, total):
        return {"status": "already_issued", "invoice_id": item.invoice_id, "invoice": invoice_out(existing)}
    return {"status": "error", "invoice_id": item.invoice_id, "errors": [{
        "field": "invoice_id", "reason": f"invoice {item.invoice_id} was issued with other content"}]}


async def _issue_set(conn: AsyncConnection, raw_items: list[Any], meta: dict[str, Any], parse,
                     invoice_out) -> list[dict[str, Any]]:
    results: list[dict[str, Any] | None] = [None] * len(raw_items)
    items: list[tuple[int, Any]] = []
    for index, raw in enumerate(raw_items):
        outcome = _parse_one(raw, parse)
        if isinstance(outcome, dict):
            results[index] = outcome
        else:
            items.append((index, outcome))
    ids = list({item.invoice_id for _, item in items})
    existing = await repo.get_invoices(conn, ids) if ids else {}
    # Items without a number get the default series' next ones (not those already issued: they
    # answer as they were), in batch order.
    unnumbered = [item for _, item in items if item.invoice_number is None and item.invoice_id not in existing]
    series = iter(await repo.next_invoice_numbers(conn, len(unnumbered)))
    assigned = {id(item): next(series) for item in unnumbered}

    def _number(item: Any) -> str:
        return item.invoice_number or assigned[id(item)]

    numbers = list({_number(item) for _, item in items if item.invoice_id not in existing})
    taken = await repo.invoice_numbers_taken(conn, numbers) if numbers else set()
    chains, customers, exposures = await handlers.credit_chains(conn, sorted({item.customer_id for _, item in items}))
    issued: dict[str, tuple[int, Any, Invoice]] = {}  # invoice_id -> (index, item, invoice) of this batch
    for index, item in items:
        if item.invoice_id in existing:
            results[index] = _existing_result(existing[item.invoice_id], item, invoice_out)
            continue
        if item.invoice_id in issued:  # twice in this batch: the second is judged against the first
            results[index] = ("same_as", item)
            continue
        number = _number(item)
        if number in taken:
            results[index] = _error(item, "invoice_number", f"invoice number {number} is already used")
            continue
        customer = customers[item.customer_id]
        if not customer.exists:
            results[index] = _error(item, "customer_id", f"customer {item.customer_id} is not registered")
            continue
        invoice = Invoice(item.invoice_id)
        chain = chains[item.customer_id]
        currency = item.currency or customer.currency
        try:
            invoice.issue(invoice_number=number, customer=customer, currency=currency,
                          issue_date=item.issue_date, due_date=item.due_date,
                          lines=item.line_tuples(), at=utc_midnight(item.issue_date), taxes=item.tax_tuples(),
                          po_number=item.po_number,
                          credit_levels=handlers.limit_levels(chain, customers, exposures, item.issue_date),
                          credit_override=item.override())
        except CreditLimitRefused as exc:
            results[index] = {**_error(item, exc.field, str(exc)),
                              "credit_limit_exceeded": handlers.credit_refusal_details(exc, currency)}
            continue
        except InvoicingRuleViolation as exc:
            results[index] = _error(item, exc.field or "body", str(exc))
            continue
        for member in chain:  # the next items are decided against this one's exposure too
            exposures[member] = exposures.get(member, Decimal(0)) + invoice.total_amount
        taken.add(number)
        issued[item.invoice_id] = (index, item, invoice)
    if issued:
        invoices = [invoice for _, _, invoice in issued.values()]
        deliveries = delivery_rows([("invoice", invoice.id, customers[invoice.customer_id], invoice.issue_date)
                                    for invoice in invoices])
        try:
            saved = await aggregate.save_new(conn, invoices, meta)
        except ConcurrencyError as exc:
            raise _Raced() from exc
        # The read-model rows take the lines, taxes and override as the events carry them (the
        # events' payloads are those objects in JSON form already: not dumped a second time).
        rows = [(invoice, events[0].payload["lines"], 1, events[0].payload["taxes"], events[0].payload["po_number"],
                 events[0].payload["credit_override"])
                for invoice, events in zip(invoices, saved)]
        # Rows, deliveries and the answer's rows in one statement.
        stored = await repo.insert_issued_invoices(conn, rows, deliveries)
        if len(stored) != len(rows):
            raise _Raced()
        for invoice_id, (index, _, _) in issued.items():
            results[index] = {"status": "issued", "invoice_id": invoice_id, "invoice": invoice_out(stored[invoice_id])}
    else:
        stored = {}
    for index, result in enumerate(results):
        if isinstance(result, tuple):  # a repeat within the batch, against what its first issued
            item = result[1]
            first = stored.get(item.invoice_id)
            results[index] = (_existing_result(first, item, invoice_out) if first is not None
                              else _error(item, "invoice_id", f"invoice {item.invoice_id} appears twice in the batch"))
    return [{"index": index, **result} for index, result in enumerate(results)]  # type: ignore[dict-item]


def _error(item: Any, field: str, reason: str) -> dict[str, Any]:
    return {"status": "error", "invoice_id": item.invoice_id, "errors": [{"field": field, "reason": reason}]}


def _parse_one(raw: Any, parse) -> Any:
    """The parsed item, or its error result."""
    try:
        item = parse(raw)
    except ValidationError as exc:
        return {"status": "error", "invoice_id": raw.get("invoice_id") if isinstance(raw, dict) else None,
                "errors": _errors(exc)}
    if not item.invoice_id:
        return {"status": "error", "invoice_id": None, "errors": [{
            "field": "invoice_id", "reason": "each invoice of a batch names its invoice_id (what makes a retry "
                                             "of it idempotent)"}]}
    return item


async def _issue_one(conn: AsyncConnection, raw: Any, meta: dict[str, Any], parse, invoice_out) -> dict[str, Any]:
    """One item against the committed state, in its own savepoint (the path after a race)."""
    item = _parse_one(raw, parse)
    if isinstance(item, dict):
        return item
    existing = await repo.get_invoice(conn, item.invoice_id)
    if existing is not None:
        return _existing_result(existing, item, invoice_out)
    try:
        async with conn.begin_nested():
            invoice = await handlers.issue_invoice(conn, handlers.IssueInvoice(
                invoice_id=item.invoice_id, invoice_number=item.invoice_number, customer_id=item.customer_id,
                currency=item.currency, issue_date=item.issue_date, due_date=item.due_date,
                lines=item.line_tuples(), taxes=item.tax_tuples(), po_number=item.po_number,
                credit_override=item.override()), meta)
    except Problem as exc:
        return {"status": "error", "invoice_id": item.invoice_id,
                "errors": [{"field": exc.field or "body", "reason": exc.detail}], **exc.extra}
    return {"status": "issued", "invoice_id": item.invoice_id, "invoice": invoice_out(invoice)}


def rows_from_file(content: bytes, file_format: str) -> list[tuple[int, dict[str, str]]]:
    """(row number, {column: text}) from a CSV (UTF-8, header row) or the first sheet of an XLSX."""
    if file_format == "csv":
        reader = csv.DictReader(io.StringIO(content.decode("utf-8-sig")))
        header = reader.fieldnames or []
        rows = [(n, {k: (v or "").strip() for k, v in row.items() if k}) for n, row in enumerate(reader, start=2)]
    else:
        from openpyxl import load_workbook

        try:
            sheet = load_workbook(io.BytesIO(content), read_only=True, data_only=True).worksheets[0]
        except Exception as exc:  # a corrupt or non-XLSX body is bad input, not a server error
            raise Problem(f"not a readable XLSX workbook: {exc}", field="body", status=422) from exc
        values = list(sheet.iter_rows(values_only=True))
        header = [str(h).strip() if h is not None else "" for h in (values[0] if values else [])]
        rows = []
        for n, row in enumerate(values[1:], start=2):
            cells = {}
            for name, value in zip(header, row):
                if not name:
                    continue
                if hasattr(value, "date") and callable(value.date):
                    value = value.date().isoformat()
                elif isinstance(value, float):
                    value = format(Decimal(str(value)), "f")
                cells[name] = "" if value is None else str(value).strip()
            if any(cells.values()):
                rows.append((n, cells))
    missing = [c for c in FILE_COLUMNS if c not in header]
    if missing:
        raise Problem(f"the file lacks the columns {', '.join(missing)}", field="body", status=422)
    return rows


def items_from_rows(rows: list[tuple[int, dict[str, str]]]) -> list[tuple[list[int], dict[str, Any]]]:
    """One invoice per invoice_number (its rows are its lines, in file order)."""
    grouped: OrderedDict[str, tuple[list[int], dict[str, Any]]] = OrderedDict()
    for n, row in rows:
        number = row.get("invoice_number", "")
        if number not in grouped:
            item = {"invoice_number": number or None, "customer_id": row.get("customer_id"),
                    "issue_date": row.get("issue_date") or None,
                    "invoice_id": row.get("invoice_id") or (f"{row.get('customer_id')}:{number}" if number else None),
                    "lines": []}
            for optional in ("due_date", "currency"):
                if row.get(optional):
                    item[optional] = row[optional]
            if row.get("credit_override_approved_by") or row.get("credit_override_reason"):
                item["credit_override"] = {"approved_by": row.get("credit_override_approved_by", ""),
                                           "reason": row.get("credit_override_reason", "")}
            grouped[number] = ([], item)
        grouped[number][0].append(n)
        grouped[number][1]["lines"].append({"description": row.get("description"), "quantity": row.get("quantity"),
                                            "unit_price": row.get("unit_price")})
    return list(grouped.values())
