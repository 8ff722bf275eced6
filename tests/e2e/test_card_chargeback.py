"""A card chargeback end to end over Kafka: an invoice issued in invoicing, paid by a card charge
in a Stripe payout report imported into cash_application; a later report's dispute (chargeback)
reopens the invoice downstream and disputes opens a deduction from ChargebackReceived."""
from __future__ import annotations

import uuid

import httpx

from tests.e2e.test_scenario import _status_is, key, post
from tests.support.platform import eventually

RUN = uuid.uuid4().hex[:8]
HEADER = ("automatic_payout_id,automatic_payout_effective_at,balance_transaction_id,created_utc,currency,gross,fee,net,"
          "reporting_category,source_id,charge_id,customer_name,payment_metadata[invoice_number],dispute_reason\n")


async def test_a_chargeback_reopens_the_invoice_and_opens_a_deduction(platform):
    inv_url, cash_url, disputes_url = (platform.urls[c] for c in ("invoicing", "cash_application", "disputes"))
    async with httpx.AsyncClient(timeout=60) as c:
        customer = (await post(c, f"{inv_url}/v1/customers", {
            "customer_id": f"card-{RUN}", "name": f"Card Buyer {RUN} Ltd", "currency": "USD",
            "payment_terms_days": 30, "credit_limit": "100000.00"}))["customer_id"]
        invoice = await post(c, f"{inv_url}/v1/invoices", {
            "customer_id": customer, "invoice_number": f"CB{RUN}", "issue_date": "2024-04-01",
            "lines": [{"description": "Subscription", "quantity": "1", "unit_price": "500.00"}]})
        await eventually(lambda: _status_is(c, f"{cash_url}/v1/open-items/{invoice['invoice_id']}", 200))

        charge = HEADER + (f"po_A{RUN},2024-04-05,txn_A{RUN},2024-04-02 10:00:00,usd,500.00,14.80,485.20,charge,"
                           f"ch_{RUN},ch_{RUN},Card Buyer,CB{RUN},\n")
        r = await c.post(f"{cash_url}/v1/card-payouts", params={"processor": "stripe"}, content=charge.encode(),
                         headers=key())
        assert r.status_code == 201 and r.json()["auto_applied"] == 1, r.text

        async def balance_is(amount: str):
            got = (await c.get(f"{inv_url}/v1/invoices/{invoice['invoice_id']}")).json()
            return got if got["open_balance"] == amount else None

        await eventually(lambda: balance_is("0.00"))
        dispute = HEADER + (f"po_B{RUN},2024-04-20,txn_B{RUN},2024-04-15 10:00:00,usd,-500.00,15.00,-515.00,dispute,"
                            f"dp_{RUN},ch_{RUN},Card Buyer,CB{RUN},duplicate\n"
                            f"po_B{RUN},2024-04-20,txn_C{RUN},2024-04-16 10:00:00,usd,900.00,26.40,873.60,charge,"
                            f"ch_C{RUN},ch_C{RUN},Somebody,,\n")
        r = await c.post(f"{cash_url}/v1/card-payouts", params={"processor": "stripe"}, content=dispute.encode(),
                         headers=key())
        assert r.status_code == 201 and r.json()["chargebacks"] == 1, r.text
        await eventually(lambda: balance_is("500.00"))

        async def deduction():
            got = (await c.get(f"{disputes_url}/v1/disputes", params={"invoice_id": invoice["invoice_id"]})).json()
            return got["data"] or None

        opened = (await eventually(deduction))[0]
        assert (opened["kind"], opened["amount"], opened["reason_code"], opened["status"]) == (
            "deduction", "500.00", "DUPLICATE_BILLING", "open")
