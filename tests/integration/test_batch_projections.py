"""The services' batch projections (shared.consumer.Projection.apply_batch) against their
per-event handlers, on PostgreSQL: the same events applied one per transaction, and in batches
(one transaction each) mixing event types that touch the same row, with an event delivered
twice inside its batch, a fact repeated under a new event id, and a whole batch delivered again,
must leave every read-model table with the same rows, to the cent. (Reporting's equivalent,
with every report compared, is tests/integration/reporting/test_order_independence.py.)"""
from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, Callable

import pytest
from sqlalchemy import text

from shared.consumer import Projection, ReceivedEvent
from shared.contracts import (
    CreditHoldPlaced,
    CreditMemoIssued,
    CustomerParentChanged,
    CustomerRegistered,
    DisputeOpened,
    DisputeResolved,
    InvoiceAdjusted,
    InvoiceIssued,
    InvoiceLine,
    PaymentApplied,
    PaymentReturned,
    PaymentUnapplied,
    ShortPayDetected,
    SmallBalanceWrittenOff,
    WriteOffApproved,
    topic_for,
)
from shared.service import Runtime
from tests.support.infra import fresh_database, sqlalchemy_url


def _event(contract: Any, event_id: str | None = None) -> ReceivedEvent:
    return ReceivedEvent(event_id=event_id or str(uuid.uuid4()), event_type=contract.event_type,
                         schema_version=contract.schema_version, source=f"/ledgerline/{contract.context}",
                         subject="s", occurred_at=None, data=contract.to_payload(), headers={},
                         topic=topic_for(contract.context), partition=0, offset=0)


def _invoice(invoice_id: str, amount: str, customer: str = "C1") -> InvoiceIssued:
    return InvoiceIssued(invoice_id=invoice_id, invoice_number=f"N-{invoice_id}", customer_id=customer,
                         currency="USD", issue_date="2024-03-01", due_date="2024-03-31", total_amount=amount,
                         lines=[InvoiceLine(description="Goods", quantity="1", unit_price=amount, amount=amount)])


def _credit(memo: str, invoice_id: str, amount: str) -> CreditMemoIssued:
    return CreditMemoIssued(credit_memo_id=memo, invoice_id=invoice_id, customer_id="C1", currency="USD",
                            amount=amount, issue_date="2024-03-05", reason="damaged")


def _applied(app: str, invoice_id: str, amount: str) -> PaymentApplied:
    return PaymentApplied(payment_id=f"P-{app}", invoice_id=invoice_id, customer_id="C1", amount=amount,
                          currency="USD", value_date="2024-03-10", application_id=app, rule="remittance",
                          confidence="1")


def _unapplied(app: str, invoice_id: str, amount: str) -> PaymentUnapplied:
    return PaymentUnapplied(payment_id=f"P-{app}", application_id=app, invoice_id=invoice_id, customer_id="C1",
                            amount=amount, currency="USD", unapplied_on="2024-03-12", reason="manual_reversal")


def _cash_application_events() -> list[ReceivedEvent]:
    credit_twice = _credit("CM-2", "INV-2", "20.00")
    return [_event(c) for c in [
        CustomerRegistered(customer_id="C1", name="Acme", currency="USD", payment_terms_days=30,
                           credit_limit="5000.00", registered_on="2023-01-01"),
        _credit("CM-1", "INV-1", "100.00"),  # before its invoice: the row holds the credit only
        _invoice("INV-1", "1000.00"),
        _invoice("INV-2", "500.50"),
        credit_twice,
        credit_twice,  # the same credit memo again under a new event id: counted once
        InvoiceAdjusted(adjustment_id="ADJ-1", invoice_id="INV-2", customer_id="C1", currency="USD",
                        direction="credit", amount="0.50", reason_code="PRICE", adjustment_date="2024-03-06",
                        requested_by="u1"),
        _credit("CM-3", "INV-2", "30.00"),  # after the adjustment (one by one), before INV-3
        _invoice("INV-3", "75.25"),
        _credit("CM-4", "INV-3", "5.25"),
        CustomerRegistered(customer_id="C1", name="Acme Wholesale", currency="USD", payment_terms_days=30,
                           credit_limit="5000.00", registered_on="2023-01-01"),  # the last name wins
        # A parent account (its receipts are matched across its children's invoices), changed
        # within the batch: the last parent wins, as one event at a time.
        CustomerParentChanged(customer_id="C1", parent_customer_id="HQ", effective_on="2024-03-01", changed_by="u1"),
        CustomerParentChanged(customer_id="C2", parent_customer_id="HQ", effective_on="2024-03-01", changed_by="u1"),
        CustomerParentChanged(customer_id="C1", parent_customer_id="HQ2", previous_parent_customer_id="HQ",
                              effective_on="2024-03-02", changed_by="u1"),
    ]]


def _short(payment: str, invoice_id: str, shortfall: str, reason: str | None = None) -> ShortPayDetected:
    return ShortPayDetected(payment_id=payment, invoice_id=invoice_id, customer_id="C1", currency="USD",
                            open_amount="1000.00", paid_amount=str(Decimal("1000.00") - Decimal(shortfall)),
                            shortfall=shortfall, value_date="2024-03-10", reason_code=reason)


def _returned(payment: str) -> PaymentReturned:
    return PaymentReturned(payment_id=payment, customer_id="C1", amount="900.00", currency="USD",
                           returned_on="2024-03-15", reason_code="R01")


def _disputes_events() -> list[ReceivedEvent]:
    return [_event(c) for c in [
        _applied("A-1", "INV-1", "40.00"),  # cash before the invoice is known
        _invoice("INV-1", "1000.00"),
        _applied("A-2", "INV-1", "60.00"),
        # Short pays of a bank file, opened together in a batch: one payment short on two
        # invoices, one short pay delivered again under a new event id, cash between them.
        _short("P-1", "INV-1", "100.00", "DAMAGED"),
        _short("P-1", "INV-2", "20.00"),
        _applied("A-3", "INV-2", "5.00"),
        _short("P-2", "INV-1", "35.50", "PRICING"),
        _short("P-1", "INV-1", "100.00", "DAMAGED"),
        # A payment returned before its short pay is seen (nothing owed on it), and one returned
        # after (its deduction withdrawn).
        _returned("P-3"),
        _short("P-3", "INV-1", "50.00"),
        _short("P-4", "INV-2", "12.00"),
        _returned("P-4"),
        _unapplied("A-1", "INV-1", "40.00"),
        _applied("A-2", "INV-1", "60.00"),  # the same application under a new event id
        _invoice("INV-1", "1000.00"),
        _invoice("INV-2", "250.00", "C2"),
    ]]


def _invoicing_events() -> list[ReceivedEvent]:
    return [_event(c) for c in [
        _applied("A-1", "INV-1", "400.00"),
        _applied("A-2", "INV-1", "100.00"),
        _unapplied("A-1", "INV-1", "400.00"),
        CreditHoldPlaced(hold_id="H1", customer_id="C1", reason="over limit", placed_on="2024-03-02"),
        SmallBalanceWrittenOff(adjustment_id="SB-1", payment_id="P-A-2", invoice_id="INV-1", customer_id="C1",
                               currency="USD", amount="0.40", value_date="2024-03-10", reason_code="SMALL"),
        WriteOffApproved(write_off_id="W-1", invoice_id="INV-2", customer_id="C1", amount="90.00", currency="USD",
                         reason="bankrupt", requested_by="u1", approved_by="u2", approved_on="2024-03-20"),
        _applied("A-2", "INV-1", "100.00"),  # the same application under a new event id
    ]]


def _collections_events() -> list[ReceivedEvent]:
    return [_event(c) for c in [
        _applied("A-1", "INV-1", "40.00"),  # cash before the invoice is known
        CustomerRegistered(customer_id="C1", name="Acme", currency="USD", payment_terms_days=30,
                           credit_limit="5000.00", registered_on="2023-01-01"),
        _invoice("INV-1", "1000.00"),
        _credit("CM-1", "INV-1", "100.00"),
        _applied("A-2", "INV-1", "60.00"),
        _unapplied("A-1", "INV-1", "40.00"),
        _invoice("INV-2", "250.00"),
        _credit("CM-1", "INV-1", "100.00"),  # the same credit memo under a new event id
        SmallBalanceWrittenOff(adjustment_id="SB-1", payment_id="P-A-2", invoice_id="INV-2", customer_id="C1",
                               currency="USD", amount="0.40", value_date="2024-03-10", reason_code="SMALL"),
        _applied("A-3", "INV-2", "249.60"),
        # Account hierarchies (the worklist ranks a paying parent's family as one unit): a batch
        # path that skips them leaves the parent without its children.
        CustomerParentChanged(customer_id="C2", parent_customer_id="C1", effective_on="2024-03-01", changed_by="u1"),
        _invoice("INV-3", "80.00", "C2"),
        CustomerParentChanged(customer_id="C3", parent_customer_id="C1", effective_on="2024-03-01", changed_by="u1"),
        CustomerParentChanged(customer_id="C3", parent_customer_id=None, previous_parent_customer_id="C1",
                              effective_on="2024-04-01", changed_by="u1"),
        # Registrations and disputes go in multi-row statements: a customer registered again
        # (the last registration's columns win; a limit is history, the latest-effective one
        # shown; one without a limit leaves the account's empty), a dispute resolved before it
        # is opened, opened and resolved in one run, and resolved twice.
        _registered("C2", "Beta", "1000.00", "2023-02-01"),
        _registered("C2", "Beta Ltd", "1500.00", "2023-01-15"),
        _registered("C4", "Gamma", "700.00", "2023-03-01"),
        _resolved("D-2", "INV-2", "2024-03-20"),
        _opened("D-1", "INV-1", "2024-03-11"),
        _opened("D-2", "INV-2", "2024-03-15"),
        _registered("C4", "Gamma", None, "2023-03-01"),
        _resolved("D-1", "INV-1", "2024-03-21"),
        _opened("D-1", "INV-1", "2024-03-12"),
        _resolved("D-1", "INV-1", "2024-03-22"),
        _invoice("INV-4", "10.00", "C4"),
    ]]


def _registered(customer: str, name: str, limit: str | None, on: str) -> CustomerRegistered:
    return CustomerRegistered(customer_id=customer, name=name, currency="USD", payment_terms_days=30,
                              credit_limit=limit, registered_on=on)


def _opened(dispute: str, invoice_id: str, on: str) -> DisputeOpened:
    return DisputeOpened(dispute_id=dispute, invoice_id=invoice_id, customer_id="C1", currency="USD",
                         amount="25.00", reason_code="pricing", opened_on=on)


def _resolved(dispute: str, invoice_id: str, on: str) -> DisputeResolved:
    return DisputeResolved(dispute_id=dispute, invoice_id=invoice_id, customer_id="C1", currency="USD",
                           credit_amount="0.00", resolution="rejected", resolved_on=on)


def _collections():
    from services.collections.application.handlers import on_external_event
    from services.collections.main import definition
    from services.collections.settings import CollectionsSettings
    return (lambda url: definition(CollectionsSettings(database_url=url)), on_external_event,
            ("invoices", "payments_applied", "credit_memos", "balance_adjustments", "customers",
             "credit_limit_history", "customer_parents", "disputes"), _collections_events)


def _cash_application():
    from services.cash_application.main import definition
    from services.cash_application.projections.open_items import on_invoicing_event
    from services.cash_application.settings import CashApplicationSettings
    return (lambda url: definition(CashApplicationSettings(database_url=url)), on_invoicing_event,
            ("open_items", "open_item_credits", "open_item_adjustments", "customers", "customer_parents"),
            _cash_application_events)


def _disputes():
    from services.disputes.application.handlers import on_external_event
    from services.disputes.main import definition
    from services.disputes.settings import DisputesSettings
    return (lambda url: definition(DisputesSettings(database_url=url)), on_external_event,
            ("invoice_references", "rebill_collections", "disputes", "returned_payments"), _disputes_events)


def _invoicing():
    from services.invoicing.application.handlers import on_external_event
    from services.invoicing.main import definition
    from services.invoicing.settings import InvoicingSettings
    return (lambda url: definition(InvoicingSettings(database_url=url)), on_external_event,
            ("invoice_settlements",), _invoicing_events)


async def _model(make_definition: Callable[[str], Any], projection: Projection, tables: tuple[str, ...],
                 batches: list[list[ReceivedEvent]], one_by_one: bool) -> dict[str, list[tuple]]:
    async with fresh_database("batchproj") as name:
        runtime = Runtime(make_definition(sqlalchemy_url(name)))
        await runtime.migrate()
        try:
            for batch in batches:
                async with runtime.engine.begin() as conn:
                    if one_by_one:
                        for event in batch:
                            await projection(conn, event)
                    else:
                        await projection.apply_batch(conn, batch)
            model: dict[str, list[tuple]] = {}
            async with runtime.engine.connect() as conn:
                for table in tables:
                    columns = [r[0] for r in await conn.execute(text(
                        "SELECT column_name FROM information_schema.columns WHERE table_name = :t"
                        " AND data_type NOT LIKE 'timestamp%' ORDER BY ordinal_position"), {"t": table})]
                    listed = ", ".join(f'"{c}"' for c in columns)
                    model[table] = [tuple(r) for r in await conn.execute(text(
                        f"SELECT {listed} FROM {table} ORDER BY {listed}"))]
            return model
        finally:
            await runtime.dispose()


@pytest.mark.parametrize("service", [_cash_application, _collections, _disputes, _invoicing],
                         ids=["cash_application", "collections", "disputes", "invoicing"])
async def test_a_batch_leaves_the_read_model_of_the_events_one_by_one(service):
    make_definition, projection, tables, events_of = service()
    events = events_of()
    expected = await _model(make_definition, projection, tables, [[e] for e in events], one_by_one=True)
    assert any(expected.values())
    if "customer_parents" in tables:  # the hierarchy is kept at all (not merely skipped by both paths)
        assert expected["customer_parents"]
    whole = await _model(make_definition, projection, tables, [events], one_by_one=False)
    assert whole == expected
    # Small batches, the first event delivered twice within its batch, the second batch delivered again.
    batches = [[events[0], events[0], events[1]], events[2:5], events[2:5], events[5:]]
    assert await _model(make_definition, projection, tables, batches, one_by_one=False) == expected


async def test_a_batch_of_short_pays_opens_each_deduction_once_and_none_for_a_returned_payment():
    make_definition, projection, _, events_of = _disputes()
    async with fresh_database("batchproj") as name:
        runtime = Runtime(make_definition(sqlalchemy_url(name)))
        await runtime.migrate()
        try:
            async with runtime.engine.begin() as conn:
                await projection.apply_batch(conn, events_of())
            async with runtime.engine.connect() as conn:
                rows = (await conn.execute(text(
                    "SELECT payment_id, invoice_id, amount, reason_code, status, version FROM disputes"
                    " WHERE kind = 'deduction' ORDER BY payment_id, invoice_id"))).all()
                streams = (await conn.execute(text(
                    "SELECT count(DISTINCT stream_id) FROM events WHERE event_type = 'DeductionOpened'"))).scalar()
        finally:
            await runtime.dispose()
    assert [(r.payment_id, r.invoice_id, str(r.amount), r.status) for r in rows] == [
        ("P-1", "INV-1", "100.0000", "open"), ("P-1", "INV-2", "20.0000", "open"),
        ("P-2", "INV-1", "35.5000", "open"), ("P-4", "INV-2", "12.0000", "resolved")]
    assert streams == 4
