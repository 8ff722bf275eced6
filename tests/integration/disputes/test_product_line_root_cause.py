"""Root cause by product line (issue 11, point 9) on a real PostgreSQL database: invoice lines
carry a product line (InvoiceIssued); a dispute naming a line counts under that line's product
line, a short-pay deduction under its invoice's when every line shares one; the answer is the same
when the short pay arrives before its invoice."""
from __future__ import annotations

import uuid
from datetime import date

import pytest

from services.disputes.application.handlers import on_external_event
from services.disputes.main import definition
from services.disputes.settings import DisputesSettings
from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import InvoiceIssued, InvoiceLine, ShortPayDetected
from tests.support.infra import idem, service_client


@pytest.fixture
async def disputes():
    async with service_client(lambda url: definition(DisputesSettings(database_url=url),
                                                     clock=FixedClock(date(2024, 4, 15)))) as (client, app):
        yield client, app


async def _deliver(app, contract) -> None:
    event = ReceivedEvent(event_id=str(uuid.uuid4()), event_type=contract.event_type,
                          schema_version=contract.schema_version, source="test", subject="s", occurred_at=None,
                          data=contract.to_payload(), headers={}, topic="t", partition=0, offset=0)
    async with app.state.runtime.engine.begin() as conn:
        await on_external_event(conn, event)


def _invoice(invoice_id: str, lines: list[tuple[str, str | None]]) -> InvoiceIssued:
    return InvoiceIssued(
        invoice_id=invoice_id, invoice_number=invoice_id.upper(), customer_id="RETAIL", currency="USD",
        issue_date="2024-03-01", due_date="2024-03-31", total_amount=f"{100 * len(lines)}.00",
        lines=[InvoiceLine(description=d, quantity="1", unit_price="100.00", amount="100.00", product_line=pl)
               for d, pl in lines])


async def test_disputes_and_deductions_count_under_their_product_line(disputes):
    client, app = disputes
    await _deliver(app, _invoice("mixed", [("Coffee", "coffee"), ("Tea", "tea")]))
    await _deliver(app, _invoice("plain", [("Old stock", None)]))
    # A short pay on an invoice not seen yet: its product line follows once the invoice arrives.
    await _deliver(app, ShortPayDetected(payment_id="pay-1", invoice_id="teas", customer_id="RETAIL", currency="USD",
                                         open_amount="200.00", paid_amount="170.00", shortfall="30.00",
                                         value_date="2024-04-01", reason_code="PRICING"))
    await _deliver(app, _invoice("teas", [("Green", "tea"), ("Black", "tea")]))

    for line, amount in ((1, "40.00"), (2, "15.00")):
        r = await client.post("/v1/disputes", headers=idem(), json={
            "invoice_id": "mixed", "amount": amount, "reason_code": "DAMAGED", "line_number": line})
        assert r.status_code == 201, r.text
    r = await client.post("/v1/disputes", headers=idem(), json={"invoice_id": "mixed", "amount": "5.00",
                                                                "reason_code": "DAMAGED"})
    assert r.status_code == 201, r.text  # no line named on a mixed invoice: unassigned
    r = await client.post("/v1/disputes", headers=idem(), json={"invoice_id": "plain", "amount": "5.00",
                                                                "reason_code": "DAMAGED", "line_number": 3})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "line_number"

    report = (await client.get("/v1/reports/deductions", params={"currency": "USD", "group_by": "product_line",
                                                                 "kind": "dispute"})).json()
    assert {row["key"]: row["opened_amount"] for row in report["data"]} == {
        "coffee": "40.00", "tea": "15.00", "unassigned": "5.00"}
    deductions = (await client.get("/v1/reports/deductions", params={"currency": "USD",
                                                                     "group_by": "product_line"})).json()
    assert [(row["key"], row["opened_amount"]) for row in deductions["data"]] == [("tea", "30.00")]
