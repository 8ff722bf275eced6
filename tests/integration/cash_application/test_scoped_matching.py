"""An import reads only the open items its receipts can concern (issue 10), through the indexes of
migration 0011, and matches them as it would every open item. Real PostgreSQL, through the API,
in one transaction and in chunks; the matching engine's own equivalence is tested in
tests/unit/cash_application/test_scoped_matching_rules.py."""
from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text

from services.cash_application.domain import matching
from services.cash_application.domain.matching import normalise_reference, reference_variants
from services.cash_application.main import definition
from services.cash_application.projections.open_items import on_invoicing_event
from services.cash_application.settings import CashApplicationSettings
from shared.consumer import ReceivedEvent
from shared.contracts import CustomerRegistered, InvoiceIssued, InvoiceLine
from tests.support.infra import idem, service_client

CUSTOMERS = 60
INVOICES = 1200  # INV-01000 .. INV-02199, dense: every number has others one edit away; customer n % 60


def _received(contract) -> ReceivedEvent:
    return ReceivedEvent(event_id=str(uuid.uuid4()), event_type=contract.event_type,
                         schema_version=contract.schema_version, source="/ledgerline/invoicing", subject="s",
                         occurred_at=None, data=contract.to_payload(), headers={}, topic="t", partition=0, offset=0)


def _amount(n: int) -> str:
    return f"{100 + n}.{n % 100:02d}"


async def _seed(app) -> None:
    events = [_received(CustomerRegistered(
        customer_id=f"C{c}", name=f"Customer {c} Holdings", currency="USD", payment_terms_days=30,
        credit_limit="1000000.00", registered_on="2024-01-01")) for c in range(CUSTOMERS)]
    events += [_received(InvoiceIssued(
        invoice_id=f"inv-{1000 + n}", invoice_number=f"INV-{1000 + n:05d}", customer_id=f"C{n % CUSTOMERS}",
        currency="USD", issue_date="2024-03-01", due_date="2024-03-31", total_amount=_amount(n),
        lines=[InvoiceLine(description="Goods", quantity="1", unit_price=_amount(n), amount=_amount(n))]))
        for n in range(INVOICES)]
    async with app.state.runtime.engine.begin() as conn:
        await on_invoicing_event.apply_batch(conn, events)


def _file() -> bytes:
    rows = ["receipt_id,value_date,amount,currency,payer_name,invoice_reference,text",
            # The payer's own invoice by its number.
            f"R1,2024-04-02,{_amount(7)},USD,Customer 7 Holdings,,INV-01007",
            # An unknown payer, a reference one edit from INV-01243 (C43) that names no invoice, its amount.
            f"R2,2024-04-02,{_amount(243)},USD,Nobody We Know,,INV-012430",
            # The payer known (C10); the reference names C11's INV-01251, the amount is C10's INV-01250.
            f"R3,2024-04-02,{_amount(250)},USD,Customer 10 Holdings,,INV-01251",
            # A remittance line typed wrong, an unknown payer: one edit from INV-01300 (C40), its amount.
            f"R4,2024-04-02,{_amount(300)},USD,Someone Else,INV-013000,",
            # Nothing to go by.
            "R5,2024-04-02,12.34,USD,Somebody Unknown,,transfer"]
    return ("\n".join(rows) + "\n").encode()


EXPECTED = {"R1": [("inv-1007", _amount(7))], "R2": [("inv-1243", _amount(243))],
            "R3": [("inv-1250", _amount(250))], "R4": [("inv-1300", _amount(300))], "R5": []}


@pytest.fixture(params=[1000, 2], ids=["one-transaction", "chunks-of-2"])
async def cash(request):
    # parse_workers=0: a chunked import matches in threads of this process, where the test's spy
    # on Matcher.match sees it (with a worker, it runs in the matching process).
    settings = lambda url: CashApplicationSettings(database_url=url, import_chunk_receipts=request.param,  # noqa: E731
                                                   parse_workers=0)
    async with service_client(lambda url: definition(settings(url))) as (client, app):
        await _seed(app)
        yield client, app


async def test_an_import_holds_only_the_open_items_its_receipts_concern_and_matches_them_all(cash, monkeypatch):
    client, app = cash
    held: list[int] = []
    match = matching.Matcher.match

    def spy(self, receipt):  # the engine's own method: how many open items it held when it matched
        held.append(len(self.invoices))
        return match(self, receipt)

    monkeypatch.setattr(matching.Matcher, "match", spy)
    r = await client.post("/v1/bank-files", params={"format": "csv"}, content=_file(), headers=idem())
    assert r.status_code == 201, r.text
    payments = {p["position"]: p for p in r.json()["payments"]}
    got = {}
    for p in payments.values():
        receipt = "R" + str(list(payments).index(p["position"]) + 1)
        got[receipt] = [(a["invoice_id"], a["amount"]) for a in p["applications"]]
    assert got == EXPECTED
    assert [p["status"] for p in payments.values()] == ["applied"] * 4 + ["unapplied"]
    # C7's and C10's 20 open items each, the invoices the references name and the few one edit
    # away whose balance the amount pays: not the 1,200 open items of the book.
    assert held and max(held) <= 60, held
    async with app.state.runtime.engine.connect() as conn:
        applied = (await conn.execute(text("SELECT sum(applied_amount) FROM open_items"))).scalar_one()
    assert applied == sum(Decimal(a) for pairs in EXPECTED.values() for _, a in pairs)


REFERENCES = ["INV-001001", "inv 1001", "#1001", "Invoice No. 1001", "INV/1001.", "ABC-0012", "RE 3001", "0003004",
              "RF18539007547034", "rf18 5390 0754 7034", "INVNO-77", "NR.000", "", "---", "INVOICES 12 34",
              "Straße-12", "ﬁle-9", "ıNV-5", "INV", "inv-0", "REINV12", "NO NO 4", "RF00AB", "x" * 40, "Ünïcödé 99"]


async def test_postgresql_computes_the_engines_reference_keys_and_variants(cash):
    _, app = cash
    async with app.state.runtime.engine.connect() as conn:
        for reference in REFERENCES:
            key, variants, item_key = (await conn.execute(
                text("SELECT cash_reference_key(:r), cash_reference_variants(cash_reference_key(:r)),"
                     " cash_open_item_key(nullif(:r, ''), 'inv-fallback-1')"), {"r": reference})).one()
            assert key == normalise_reference(reference), reference
            assert set(variants) == reference_variants(key), reference
            assert item_key == normalise_reference(reference or "inv-fallback-1"), reference


async def test_an_open_items_stored_reference_key_is_the_engines_key(cash):
    """Imports index open items by the key PostgreSQL stores with them (migration 0014) instead of
    normalising each number again: it must be the key the engine computes from the number (or,
    without one, from the invoice id), so a reference finds the same invoices either way."""
    _, app = cash
    async with app.state.runtime.engine.connect() as conn:
        for n, reference in enumerate(REFERENCES):
            await conn.execute(text(
                "INSERT INTO open_items (invoice_id, invoice_number, customer_id, currency, total_amount, issue_date,"
                " due_date) VALUES (:i, nullif(:r, ''), 'C-key', 'USD', 10, '2024-01-01', '2024-01-31')"),
                {"i": f"inv-key-{n}", "r": reference})
        rows = (await conn.execute(text("SELECT invoice_id, invoice_number, reference_key FROM open_items"
                                        " WHERE customer_id = 'C-key'"))).all()
        await conn.rollback()
    assert len(rows) == len(REFERENCES)
    for invoice_id, number, stored in rows:
        assert stored == normalise_reference(number or invoice_id), (number, stored)
