"""Bank files end to end: invoices issued in invoicing, a BAI2 statement imported into
cash_application over HTTP, the matches applied and seen by invoicing; then the bank returns
one receipt in the next day's file and the invoice is open again downstream."""
from __future__ import annotations

import uuid

import httpx

from tests.e2e.test_scenario import _events_on, _status_is, key, post
from tests.fixtures.bank.bai2_builder import bai2
from tests.support.platform import eventually

RUN = uuid.uuid4().hex[:6]


async def _open_balance(c: httpx.AsyncClient, url: str) -> str:
    return (await c.get(url)).json()["open_balance"]


async def test_bank_file_import_applies_and_a_return_reopens_downstream(platform):
    inv_url, cash_url = platform.urls["invoicing"], platform.urls["cash_application"]
    async with httpx.AsyncClient(timeout=60) as c:
        customer = (await post(c, f"{inv_url}/v1/customers", {
            "customer_id": f"harbor-{RUN}", "name": f"Harbor Freight {RUN} Inc", "currency": "USD",
            "payment_terms_days": 30, "credit_limit": "100000.00"}))["customer_id"]
        invoices = [await post(c, f"{inv_url}/v1/invoices", {
            "customer_id": customer, "invoice_number": f"HF{RUN}-{n}", "issue_date": "2024-04-01",
            "lines": [{"description": "Freight", "quantity": "1", "unit_price": amount}]})
            for n, amount in ((1, "1000.00"), (2, "250.00"))]
        for inv in invoices:
            await eventually(lambda inv=inv: _status_is(c, f"{cash_url}/v1/open-items/{inv['invoice_id']}", 200))
        paid, small = invoices

        statement = bai2([("195", 100000, f"W{RUN}", paid["invoice_number"], [f"OB:HARBOR FREIGHT {RUN}"]),
                          ("165", 24900, f"A{RUN}", "REMITTANCE", [f"OBI:INV {small['invoice_number']}"])],
                         account=f"9{RUN}", file_id=f"F{RUN}", as_of="240402")
        r = await c.post(f"{cash_url}/v1/bank-files", params={"format": "bai2"}, content=statement.encode(),
                         headers=key())
        assert r.status_code == 201, r.text
        result = r.json()
        assert (result["receipts"], result["auto_applied"]) == (2, 2)
        # 1.00 short on 250.00 is within the tolerance (5.00 and 1%): written off, both invoices close.
        for inv in invoices:
            await eventually(lambda inv=inv: _closed(c, f"{inv_url}/v1/invoices/{inv['invoice_id']}"))

        returned = bai2([("555", 100000, f"RET{RUN}", f"W{RUN}", ["RETURN R01 INSUFFICIENT FUNDS"])],
                        account=f"9{RUN}", file_id=f"G{RUN}", as_of="240403")
        r = await c.post(f"{cash_url}/v1/bank-files", params={"format": "bai2"}, content=returned.encode(),
                         headers=key())
        assert r.status_code == 201 and r.json()["returns"] == 1, r.text

        async def reopened():
            got = (await c.get(f"{inv_url}/v1/invoices/{paid['invoice_id']}")).json()
            return got if got["open_balance"] == "1000.00" else None

        await eventually(reopened)
        assert await _open_balance(c, f"{cash_url}/v1/open-items/{paid['invoice_id']}") == "1000.00"

    seen = await _events_on(platform.topic("cash_application"),
                            {"PaymentUnapplied", "PaymentReturned", "SmallBalanceWrittenOff", "BankStatementImported"},
                            RUN)
    assert seen["PaymentReturned"]["ce_source"] == "/ledgerline/cash_application"


async def _closed(c: httpx.AsyncClient, url: str):
    got = (await c.get(url)).json()
    return got if got["open_balance"] == "0.00" else None
