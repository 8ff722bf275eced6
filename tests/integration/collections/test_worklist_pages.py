"""A collector's worklist sorted and paged by collections (GET /v1/worklists/{collector} with
sort, order, limit, offset and after), over HTTP on a real PostgreSQL database: every order gives
the same entries as the whole worklist, pages cut it without gaps or repeats, ties go by customer
id, `total` counts the whole worklist, and invoices paid in full count nowhere."""
from __future__ import annotations

from decimal import Decimal

from services.collections.domain.worklist import WORKLIST_SORTS
from shared.contracts import CustomerRegistered
from tests.integration.collections.test_dunning import collections, deliver, invoice, payment, smtp  # noqa: F401

AS_OF = {"as_of": "2024-03-01"}
# customer id -> (name, [(invoice id, due date, total)]); names sort otherwise than the ids, in
# mixed case; a, b and g owe the same 300.00 (g after a partial payment): ties.
BOOK = {
    "a": ("zeta", [("a-1", "2024-02-10", "300.00")]),
    "b": ("Alpha", [("b-1", "2024-02-20", "300.00")]),
    "c": ("mid", [("c-1", "2024-01-05", "5000.00")]),
    "d": ("beta", [("d-1", "2024-02-25", "120.00"), ("d-2", "2024-01-20", "150.00")]),
    "e": ("Omega", [("e-1", "2024-02-28", "9000.00")]),
    "f": ("delta", [("f-1", "2024-02-01", "700.00")]),       # paid in full on 2024-02-20
    "g": ("Gamma", [("g-1", "2024-02-15", "800.00")]),       # 500.00 paid
    "h": ("eta", [("h-1", "2024-03-20", "400.00")]),         # not yet due
}


async def _book(app, client) -> None:
    for customer_id, (name, invoices) in BOOK.items():
        await deliver(app, CustomerRegistered(customer_id=customer_id, name=name, currency="EUR", payment_terms_days=30,
                                              credit_limit="10000.00", registered_on="2023-01-01"))
        for invoice_id, due, total in invoices:
            await invoice(app, invoice_id, due, total, customer_id=customer_id)
        r = await client.put(f"/v1/customers/{customer_id}/collector", json={"collector_id": "col-1"})
        assert r.status_code in (200, 201), r.text
    await deliver(app, payment("f-1", "700.00", "2024-02-20", customer_id="f"))
    await deliver(app, payment("g-1", "500.00", "2024-02-20", customer_id="g"))


def _expected(entries: list[dict], sort: str, descending: bool) -> list[str]:
    key = {"priority": lambda e: Decimal(e["priority"]), "amount_past_due": lambda e: Decimal(e["amount_past_due"]),
           "oldest_days_past_due": lambda e: e["oldest_days_past_due"], "name": lambda e: e["name"].casefold(),
           "risk_score": lambda e: e["risk_score"] or 0}[sort]
    ordered = sorted(entries, key=lambda e: e["customer_id"])
    ordered.sort(key=key, reverse=descending)  # stable: ties stay by customer id, either way
    return [e["customer_id"] for e in ordered]


async def test_the_worklist_sorts_and_pages_on_the_server(collections):  # noqa: F811
    client, app = collections
    await _book(app, client)
    whole = (await client.get("/v1/worklists/col-1", params=AS_OF)).json()
    # By default the whole worklist, by priority, as before; f is paid, h not yet due.
    assert (whole["total"], whole["sort"], whole["order"], whole["limit"]) == (6, "priority", "desc", None)
    entries = {e["customer_id"]: e for e in whole["data"]}
    assert set(entries) == {"a", "b", "c", "d", "e", "g"}
    assert [e["customer_id"] for e in whole["data"]] == _expected(whole["data"], "priority", True)
    assert (entries["g"]["amount_past_due"], entries["g"]["oldest_days_past_due"]) == ("300.00", 15)
    assert (entries["d"]["amount_past_due"], entries["d"]["oldest_days_past_due"]) == ("270.00", 41)
    assert entries["g"]["family"]["open_balance"] == "300.00" and entries["g"]["family"]["aging"]["1-30"] == "300.00"

    assert set(WORKLIST_SORTS) == {"priority", "amount_past_due", "oldest_days_past_due", "name", "risk_score"}
    for sort in WORKLIST_SORTS:
        for order in ("asc", "desc"):
            expected = _expected(whole["data"], sort, order == "desc")
            # One call for all of it, then pages of 4: the second is cut short at the end.
            body = (await client.get("/v1/worklists/col-1", params={**AS_OF, "sort": sort, "order": order})).json()
            assert [e["customer_id"] for e in body["data"]] == expected, (sort, order)
            first = (await client.get("/v1/worklists/col-1", params={**AS_OF, "sort": sort, "order": order,
                                                                      "limit": 4})).json()
            second = (await client.get("/v1/worklists/col-1", params={**AS_OF, "sort": sort, "order": order,
                                                                       "limit": 4, "offset": 4})).json()
            assert (first["total"], second["total"], len(first["data"]), len(second["data"])) == (6, 6, 4, 2)
            assert [e["customer_id"] for e in first["data"] + second["data"]] == expected, (sort, order)
            # A page's entries are the whole worklist's, reasons, family and tasks included.
            assert all(e == entries[e["customer_id"]] for e in first["data"] + second["data"])
    # Ties by customer id whichever the direction: a, b and g owe 300.00 each.
    by_amount = (await client.get("/v1/worklists/col-1", params={**AS_OF, "sort": "amount_past_due"})).json()
    assert by_amount["order"] == "desc"
    assert [e["customer_id"] for e in by_amount["data"]] == ["e", "c", "a", "b", "g", "d"]
    ascending = (await client.get("/v1/worklists/col-1", params={**AS_OF, "sort": "amount_past_due",
                                                                  "order": "asc"})).json()
    assert [e["customer_id"] for e in ascending["data"]] == ["d", "a", "b", "g", "c", "e"]
    by_name = (await client.get("/v1/worklists/col-1", params={**AS_OF, "sort": "name"})).json()
    assert by_name["order"] == "asc" and [e["name"] for e in by_name["data"]] == \
        ["Alpha", "beta", "Gamma", "mid", "Omega", "zeta"]
    by_age = (await client.get("/v1/worklists/col-1", params={**AS_OF, "sort": "oldest_days_past_due",
                                                               "limit": 2})).json()
    assert [(e["customer_id"], e["oldest_days_past_due"]) for e in by_age["data"]] == [("c", 56), ("d", 41)]
    # Past the end: nothing, and the total still says how many there are.
    beyond = (await client.get("/v1/worklists/col-1", params={**AS_OF, "limit": 4, "offset": 6})).json()
    assert (beyond["total"], beyond["data"]) == (6, [])


async def test_the_next_account_and_bad_paging_parameters(collections):  # noqa: F811
    client, app = collections
    await _book(app, client)
    ranked = [e["customer_id"] for e in (await client.get("/v1/worklists/col-1", params=AS_OF)).json()["data"]]

    async def after(customer_id: str, **extra) -> list[str]:
        body = (await client.get("/v1/worklists/col-1", params={**AS_OF, "after": customer_id, **extra})).json()
        assert body["total"] == 6
        return [e["customer_id"] for e in body["data"]]
    assert await after(ranked[2], limit=1) == [ranked[3]]
    assert await after(ranked[2]) == ranked[3:]
    assert await after(ranked[-1], limit=1) == []
    assert await after("f", limit=2) == ranked[:2]          # not on the worklist (paid): from the first
    assert await after(ranked[0], limit=2, offset=1) == ranked[2:4]
    for params, field in (({"sort": "balance"}, "sort"), ({"order": "up"}, "order"), ({"limit": 0}, "limit"),
                          ({"limit": 501}, "limit"), ({"offset": -1}, "offset"), ({"limit": "many"}, "limit")):
        r = await client.get("/v1/worklists/col-1", params={**AS_OF, **params})
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert r.json()["errors"][0]["field"] == field, r.text
