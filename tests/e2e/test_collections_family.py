"""Account hierarchies in collections, through the service processes on real PostgreSQL and Kafka:
invoicing puts three stores under a head office (CustomerParentChanged) and issues their
invoices; collections consumes the events from Kafka and
- ranks the head office's family as one unit on the head office's collector's worklist, with the
  family's past-due amount and aging, while the stores' own collector no longer calls about them;
- shows on the head office's account the family's open balance and overdue amounts by aging
  bucket, and each child with its balances;
- reads the hierarchy as of the day asked: a store that left the family in May counts before
  and not after."""
from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import httpx

from tests.support.platform import eventually, running_platform

RUN = uuid.uuid4().hex[:6]


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def post(client: httpx.AsyncClient, url: str, body: dict, expect: int = 201) -> dict:
    r = await client.post(url, json=body, headers=key())
    assert r.status_code == expect, r.text
    return r.json()


async def test_a_paying_parents_family_is_one_unit_on_the_worklist_and_its_account(tmp_path: Path):
    async with running_platform(tmp_path / "logs") as platform, httpx.AsyncClient(timeout=60) as c:
        inv, col = platform.urls["invoicing"], platform.urls["collections"]
        hq, stores, alone = f"HQ-{RUN}", [f"ST-{RUN}-{n}" for n in range(3)], f"SOLO-{RUN}"
        for customer, name in [(hq, "Northwind Head Office"), *[(s, f"Northwind Store {s}") for s in stores],
                               (alone, "Solo Traders")]:
            await post(c, f"{inv}/v1/customers", {"customer_id": customer, "name": name, "currency": "EUR",
                                                   "payment_terms": "NET30", "credit_limit": "50000.00",
                                                   "registered_on": "2024-01-01"})
        for store in stores:
            await post(c, f"{inv}/v1/customers/{store}/parent", {"parent_customer_id": hq, "effective_on": "2024-02-01"})
        # The third store is bought out in May: it stands alone from then on.
        await post(c, f"{inv}/v1/customers/{stores[2]}/parent", {"parent_customer_id": None,
                                                                  "effective_on": "2024-05-15"})
        # Issued March 1st, due March 31st (NET30): 62 days past due on June 1st. The second
        # store's second invoice is due June 8th: open, not yet due.
        amounts = {stores[0]: ["1200.00"], stores[1]: ["800.50", "300.00"], stores[2]: ["450.00"], alone: ["90.00"]}
        for customer, lines in amounts.items():
            for n, amount in enumerate(lines):
                await post(c, f"{inv}/v1/invoices", {
                    "customer_id": customer, "invoice_number": f"{RUN}-{customer}-{n}",
                    "issue_date": "2024-03-01" if n == 0 else "2024-05-09",
                    "lines": [{"description": "Weekly delivery", "quantity": "1", "unit_price": amount}]})

        # The head office is Ann's; the stores and the solo customer are Bob's.
        for customer, collector in [(hq, "ann"), *[(s, "bob") for s in stores], (alone, "bob")]:
            r = await c.put(f"{col}/v1/customers/{customer}/collector", json={"collector_id": collector})
            assert r.status_code == 200, r.text

        async def families_known():
            account = (await c.get(f"{col}/v1/customers/{hq}", params={"as_of": "2024-05-01"})).json()
            later = (await c.get(f"{col}/v1/customers/{hq}", params={"as_of": "2024-06-01"})).json()
            # The solo customer's invoice travels on its own partition: wait for it too.
            solo = (await c.get(f"{col}/v1/customers/{alone}", params={"as_of": "2024-06-01"})).json()
            known = len(account.get("children") or []) == 3 and account["family"]["open_balance"] == "2450.50" \
                and len(later["children"]) == 2 and later["family"]["open_balance"] == "2300.50" \
                and (solo.get("balances") or {}).get("open_balance") == "90.00"
            return account if known else None
        may = await eventually(families_known, timeout=120)

        # Before the buy-out: three children, 1200.00 + 800.50 + 450.00 past due (31 days: 31-60).
        assert may["paid_by"] == hq and may["parent_customer_id"] is None
        assert may["family"]["accounts"] == 4
        assert (may["family"]["open_balance"], may["family"]["past_due"]) == ("2450.50", "2450.50")
        assert may["balances"]["open_balance"] == "0.00"

        june = (await c.get(f"{col}/v1/customers/{hq}", params={"as_of": "2024-06-01"})).json()
        assert [ch["customer_id"] for ch in june["children"]] == stores[:2]
        assert june["family"] == {"currency": "EUR", "open_balance": "2300.50", "past_due": "2000.50", "accounts": 3,
                                  "aging": {"current": "300.00", "1-30": "0.00", "31-60": "0.00",
                                            "61-90": "2000.50", "90+": "0.00"}}
        second = june["children"][1]
        assert (second["parent_customer_id"], second["open_balance"], second["past_due"]) == \
            (hq, "1100.50", "800.50")
        store = (await c.get(f"{col}/v1/customers/{stores[0]}", params={"as_of": "2024-06-01"})).json()
        assert (store["parent_customer_id"], store["paid_by"], store["children"]) == (hq, hq, [])

        # Ann calls the head office once about its family; Bob no longer calls the two stores.
        ann = (await c.get(f"{col}/v1/worklists/ann", params={"as_of": "2024-06-01"})).json()["data"]
        assert len(ann) == 1
        unit = ann[0]
        assert (unit["customer_id"], unit["family_size"], unit["family_members"]) == (hq, 3, stores[:2])
        assert (unit["amount_past_due"], unit["own_amount_past_due"], unit["oldest_days_past_due"]) == \
            ("2000.50", "0.00", 62)
        assert unit["family"]["aging"]["61-90"] == "2000.50" and unit["family"]["open_balance"] == "2300.50"
        # 62 / 90 * 25 = 17.2, never contacted 10, 2000.50 / 10000 * 30 = 6.0
        assert unit["reasons"] == ["oldest invoice 62 days past due (+17.2)", "never contacted (+10.0)",
                                   "2000.50 EUR past due across 3 accounts (+6.0)"]
        assert unit["priority"] == "33.2"
        assert unit["reason_details"][2] == {"code": "amount_past_due", "points": "6.0", "values": {
            "amount": "2000.50", "currency": "EUR", "accounts": "3"}}
        bob = (await c.get(f"{col}/v1/worklists/bob", params={"as_of": "2024-06-01"})).json()["data"]
        assert {e["customer_id"] for e in bob} == {stores[2], alone}
        assert all(e["family_size"] == 1 for e in bob)
        # In May the third store was still the head office's: Bob had only the solo customer.
        bob_may = (await c.get(f"{col}/v1/worklists/bob", params={"as_of": "2024-05-01"})).json()["data"]
        assert [e["customer_id"] for e in bob_may] == [alone]
        ann_may = (await c.get(f"{col}/v1/worklists/ann", params={"as_of": "2024-05-01"})).json()["data"]
        assert ann_may[0]["family_size"] == 4 and Decimal(ann_may[0]["amount_past_due"]) == Decimal("2450.50")
