"""The cash applier's day beyond applying, in headless Chromium through the real services: the
unapplied-cash queue sorted and paged by cash application (amount, age, customer, suggestion
score); reversing, re-applying and returning a payment from its page, each with a reason and a
confirmation (the person is the events' actor); the daily reconciliation by bank account and
day after a BAI2 upload. A collector gets no button and a 403."""
from __future__ import annotations

import re
import uuid
from datetime import date
from decimal import Decimal

import httpx
import pytest

from tests.fixtures.bank.bai2_builder import bai2
from tests.workbench.book import post
from tests.workbench.conftest import check_accessibility, new_page, sign_in, snapshot

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _payment(stack, payment_id: str) -> dict:
    async with httpx.AsyncClient(headers=stack.api, timeout=30) as c:
        r = await c.get(f"{stack.urls['cash_application']}/v1/payments/{payment_id}")
        assert r.status_code == 200, r.text
        return r.json()


async def _csrf(page) -> str:
    return await page.locator("input[name=csrf_token]").first.get_attribute("value")


async def test_the_unapplied_queue_sorts_on_the_server(stack, browser):
    run = uuid.uuid4().hex[:6]
    async with httpx.AsyncClient(headers=stack.api, timeout=30) as c:
        for i, amount in enumerate(("3.21", "987.65", "45.67") + tuple(f"{n}.{n:02d}" for n in range(5, 29))):
            await post(c, f"{stack.urls['cash_application']}/v1/payments", {
                "customer_id": f"QUEUE-{run}-{i}", "amount": amount, "currency": "USD",
                "value_date": date.today().replace(day=1).isoformat() if i == 1 else date.today().isoformat(),
                "method": "wire", "reference": f"Q-{run}-{i}"})
        expected = (await c.get(f"{stack.urls['cash_application']}/v1/unapplied-cash",
                                params={"sort": "amount", "order": "desc", "limit": 50})).json()["data"]
    page = await new_page(browser, stack)
    await sign_in(page, stack, "carl")
    await page.get_by_test_id("sort-amount").click()
    await page.wait_for_url(re.compile(r"sort=amount&order=desc"))
    rows = page.locator("[data-testid=unapplied] tbody tr")
    shown = [await r.get_attribute("data-payment") for r in await rows.all()]
    assert shown == [p["payment_id"] for p in expected]
    amounts = [Decimal(await r.locator("td[data-amount]").get_attribute("data-amount")) for r in await rows.all()]
    assert amounts == sorted(amounts, reverse=True) and Decimal("987.65") in amounts
    await page.get_by_test_id("sort-amount").click()
    await page.wait_for_url(re.compile(r"sort=amount&order=asc"))
    amounts = [Decimal(await r.locator("td[data-amount]").get_attribute("data-amount")) for r in await rows.all()]
    assert amounts == sorted(amounts)
    # Age: oldest first, then by customer.
    await page.get_by_test_id("sort-age").click()
    await page.wait_for_url(re.compile(r"sort=age&order=desc"))
    ages = [int(await r.locator("td[data-age]").get_attribute("data-age")) for r in await rows.all()]
    assert ages == sorted(ages, reverse=True)
    await page.get_by_test_id("sort-customer").click()
    await page.wait_for_url(re.compile(r"sort=customer&order=asc"))
    await page.get_by_test_id("sort-score").click()
    await page.wait_for_url(re.compile(r"sort=score&order=desc"))
    await check_accessibility(page, "cash-queue-sorted")
    await snapshot(page, stack, "cash-queue-sorted")
    # Pages of 25: forward with the service's cursor and back again, every receipt once, in order.
    await page.goto(f"{stack.url}/cash?sort=amount&order=desc&size=25")
    assert [await r.get_attribute("data-payment") for r in await rows.all()] == [p["payment_id"] for p in expected][:25]
    assert len(expected) > 25
    seen = [await r.get_attribute("data-payment") for r in await rows.all()]
    await page.get_by_test_id("page-next").click()
    await page.wait_for_url(re.compile(r"start=26"))
    seen += [await r.get_attribute("data-payment") for r in await rows.all()]
    assert seen == [p["payment_id"] for p in expected][:len(seen)]
    await page.get_by_test_id("page-previous").click()
    await page.wait_for_url(re.compile(r"sort=amount&order=desc&size=25$"))
    assert [await r.get_attribute("data-payment") for r in await rows.all()] == seen[:25]
    assert page.errors == []  # type: ignore[attr-defined]


async def test_a_cash_applier_reverses_reapplies_and_returns_a_payment(stack, browser):
    customer = list(stack.book["customers"].values())[1]
    first, second = [i for i in stack.book["invoices"][customer] if i["open"]][:2]
    run = uuid.uuid4().hex[:6]
    async with httpx.AsyncClient(headers=stack.api, timeout=30) as c:
        paid = await post(c, f"{stack.urls['cash_application']}/v1/payments", {
            "customer_id": customer, "amount": "7.00", "currency": "USD", "value_date": date.today().isoformat(),
            "method": "ach", "reference": f"REV-{run}",
            "remittance": [{"invoice_id": first["invoice_id"], "amount": "7.00"}]})
    assert [a["amount"] for a in paid["applications"]] == ["7.00"]
    page = await new_page(browser, stack)
    await sign_in(page, stack, "carl")

    # Reverse: a reason, then a confirmation that says how much.
    await page.goto(f"{stack.url}/cash/payments/{paid['payment_id']}")
    await check_accessibility(page, "cash-payment-actions")
    await snapshot(page, stack, "cash-payment-actions")
    form = page.get_by_test_id("reverse-form")
    await form.get_by_label("Reason").fill("applied to the wrong invoice")
    await form.get_by_test_id("reverse").click()
    await page.wait_for_selector("[data-testid=confirm-summary]")
    assert await page.locator("[data-testid=confirm-summary] dd[data-amount]").first.get_attribute(
        "data-amount") == "7.00"
    assert (await _payment(stack, paid["payment_id"]))["unapplied_amount"] == "0.00"  # nothing done yet
    await check_accessibility(page, "cash-confirm")
    await snapshot(page, stack, "cash-confirm")
    await page.get_by_test_id("confirm").click()
    await page.wait_for_selector("[data-testid=saved][data-saved=reversed]")
    after = await _payment(stack, paid["payment_id"])
    assert after["unapplied_amount"] == "7.00"
    assert [(a["reversed_on"] is not None, a["reversal_reason"]) for a in after["applications"]] == [
        (True, "manual_reversal")]

    # Apply it again to the first invoice, then re-apply it to the second one.
    await page.locator(f"[data-testid=apply-form] input[name=pick][value='{first['invoice_id']}']").check()
    await page.locator(f"[data-testid=apply-form] input[name='amount_{first['invoice_id']}']").fill("7.00")
    await page.get_by_test_id("apply").click()
    await page.wait_for_selector("[data-testid=saved][data-saved=applied]")
    form = page.get_by_test_id("reapply-form")
    await form.locator(f"input[name=pick][value='{second['invoice_id']}']").check()
    await form.locator(f"input[name='amount_{second['invoice_id']}']").fill("7.00")
    await form.get_by_label("Reason").fill("the customer meant the other invoice")
    await form.get_by_test_id("reapply").click()
    await page.wait_for_selector("[data-testid=confirm-summary]")
    await page.get_by_test_id("confirm").click()
    await page.wait_for_selector("[data-testid=saved][data-saved=reapplied]")
    after = await _payment(stack, paid["payment_id"])
    active = [(a["invoice_id"], a["amount"], a["rule"]) for a in after["applications"] if not a["reversed_on"]]
    assert active == [(second["invoice_id"], "7.00", "manual")]
    assert [a["reversal_reason"] for a in after["applications"] if a["reversed_on"]] == [
        "manual_reversal", "reapplied"]

    # Cancel leaves it as it is; confirm returns it.
    form = page.get_by_test_id("return-form")
    await form.get_by_label("Return code").select_option("NSF")
    await form.get_by_label("Reason").fill("insufficient funds")
    await form.get_by_test_id("return").click()
    await page.get_by_test_id("cancel").click()
    await page.wait_for_url(re.compile(rf"/cash/payments/{paid['payment_id']}$"))
    assert (await _payment(stack, paid["payment_id"]))["status"] != "returned"
    form = page.get_by_test_id("return-form")
    await form.get_by_label("Return code").select_option("NSF")
    await form.get_by_label("Reason").fill("insufficient funds")
    await form.get_by_test_id("return").click()
    await page.get_by_test_id("confirm").click()
    await page.wait_for_selector("[data-testid=saved][data-saved=returned]")
    after = await _payment(stack, paid["payment_id"])
    assert (after["status"], after["return_reason_code"]) == ("returned", "NSF")
    assert all(a["reversed_on"] for a in after["applications"])
    assert await page.get_by_test_id("return-form").count() == 0  # nothing left to do on it
    await snapshot(page, stack, "cash-payment-returned")
    async with httpx.AsyncClient(headers=stack.api, timeout=30) as c:
        item = (await c.get(f"{stack.urls['cash_application']}/v1/open-items/{second['invoice_id']}")).json()
    assert item["status"] == "open"

    # A collector gets no cash page and no way to act by hand-made request.
    alice = await new_page(browser, stack)
    await sign_in(alice, stack, "alice")
    csrf = await _csrf(alice)
    for path, form in (("reversal", {"reason": "x", "confirm": "yes"}),
                       ("return", {"reason_code": "NSF", "reason": "x", "confirm": "yes"}),
                       ("reapplication", {"pick": second["invoice_id"], f"amount_{second['invoice_id']}": "1.00",
                                          "reason": "x", "confirm": "yes"})):
        refused = await alice.request.post(f"{stack.url}/cash/payments/{paid['payment_id']}/{path}",
                                           form={"csrf_token": csrf, **form})
        assert refused.status == 403, path
    assert (await alice.goto(f"{stack.url}/cash/reconciliation")).status == 403
    # Without the CSRF token the cash applier is refused too.
    forged = await page.request.post(f"{stack.url}/cash/payments/{paid['payment_id']}/reversal",
                                     form={"reason": "x", "confirm": "yes"})
    assert forged.status == 403
    assert page.errors == []  # type: ignore[attr-defined]


async def test_the_daily_reconciliation_by_bank_account_and_day(stack, browser):
    # A receipt from a payer nobody knows: the bank line and the receipt it posted agree.
    account = f"77{uuid.uuid4().int % 10**8:08d}"
    statement = bai2([("165", 111, f"B{account[-6:]}", f"NOREF{account[-6:]}", ["OB:NOBODY WE KNOW"])],
                     account=account, as_of=date.today().strftime("%y%m%d"), file_id=f"F{account[-6:]}")
    page = await new_page(browser, stack)
    await sign_in(page, stack, "carl")
    form = page.get_by_test_id("upload-form")
    await form.get_by_label("Format").select_option("bai2")
    await form.get_by_label("File").set_input_files(
        files=[{"name": "statement.bai2", "mimeType": "text/plain", "buffer": statement.encode()}])
    await form.get_by_test_id("upload").click()
    await page.wait_for_selector("[data-testid=import-result]")

    await page.goto(f"{stack.url}/cash")
    await page.get_by_test_id("nav-reconciliation").click()
    await page.wait_for_url("**/cash/reconciliation")
    row = page.locator(f"[data-testid=reconciliation] tr[data-account='{account}']")
    assert await row.locator("td[data-amount]").first.get_attribute("data-amount") == "1.11"
    assert await row.get_by_test_id("difference").get_attribute("data-amount") == "0.00"
    # The book's own receipts of today came by API, not from a bank line: variances on the whole day.
    assert await page.locator("[data-testid=variances] tr[data-variance=receipt_without_line]").count() >= 1
    await check_accessibility(page, "cash-reconciliation")
    await snapshot(page, stack, "cash-reconciliation")
    await page.get_by_label("Bank account").select_option(account)
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_url(re.compile(rf"account={account}"))
    assert await page.get_by_test_id("no-variances").count() == 1
    await page.get_by_test_id("day-previous").click()
    await page.wait_for_url(re.compile(r"day=\d{4}-\d\d-\d\d"))
    assert await page.locator(f"tr[data-account='{account}'] td[data-amount]").first.get_attribute(
        "data-amount") == "0.00"
    export = await page.request.get(f"{stack.url}/export/reconciliation.xlsx?account={account}")
    assert export.status == 200
    from io import BytesIO

    from openpyxl import load_workbook
    sheet = list(load_workbook(BytesIO(await export.body())).active.iter_rows(values_only=True))
    assert sheet[0][:3] == ("Day", "Bank account", "Currency") and sheet[1][1] == account
    assert Decimal(str(sheet[1][4])) == Decimal("1.11") and Decimal(str(sheet[1][8])) == Decimal("0")
    variances = await page.request.get(f"{stack.url}/export/reconciliation-variances.xlsx")
    sheet = list(load_workbook(BytesIO(await variances.body())).active.iter_rows(values_only=True))
    assert sheet[0][:4] == ("Day", "Bank account", "Kind", "Amount")
    assert "receipt_without_line" in {r[2] for r in sheet[1:]} and all(r[1] == "all" for r in sheet[1:])
    assert page.errors == []  # type: ignore[attr-defined]
