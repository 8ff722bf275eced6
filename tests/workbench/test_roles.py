"""The cash applier, the dispute analyst and the AR manager in headless Chromium through the
real services: the unapplied queue, applying with running totals and uploading a bank file;
the disputes queue and resolving one; write-off approval and Excel export. Each role is refused
what it may not do (no button, 403)."""
from __future__ import annotations

import io
import uuid
from datetime import date
from decimal import Decimal

import httpx
import pytest
from openpyxl import load_workbook

from tests.support.platform import eventually
from tests.workbench.conftest import check_accessibility, new_page, sign_in, snapshot

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _csrf(page) -> str:
    return await page.locator("input[name=csrf_token]").first.get_attribute("value")


async def test_a_cash_applier_applies_a_receipt_with_running_totals_and_uploads_a_bank_file(stack, browser):
    receipt = stack.book["unapplied"]
    assert receipt["unapplied_amount"] == "12.34"
    page = await new_page(browser, stack)
    await sign_in(page, stack, "carl")
    assert page.url.endswith("/cash")
    row = page.locator(f"tr[data-payment='{receipt['payment_id']}']")
    assert await row.locator("td[data-amount]").get_attribute("data-amount") == "12.34"
    await check_accessibility(page, "cash-queue")
    await snapshot(page, stack, "cash-queue")

    await page.get_by_test_id(f"open-payment-{receipt['payment_id']}").click()
    await page.wait_for_url(f"**/cash/payments/{receipt['payment_id']}")
    invoice = await page.locator("[data-testid=open-items] tbody tr").first.get_attribute("data-invoice")
    await page.locator(f"input[name=pick][value='{invoice}']").check()
    await page.locator(f"input[name='amount_{invoice}']").fill("10.01")
    await page.wait_for_function(
        "() => document.querySelector('[data-testid=selected]').dataset.amount === '10.01'")
    assert await page.get_by_test_id("remaining").get_attribute("data-amount") == "2.33"
    await page.locator(f"input[name='amount_{invoice}']").fill("12.34")
    await page.wait_for_function(
        "() => document.querySelector('[data-testid=remaining]').dataset.amount === '0.00'")
    await check_accessibility(page, "cash-payment")
    await snapshot(page, stack, "cash-payment")
    await page.get_by_test_id("apply").click()
    await page.wait_for_selector("[data-testid=saved]")
    assert await page.get_by_test_id("unapplied").get_attribute("data-amount") == "0.00"
    async with httpx.AsyncClient(headers=stack.api, timeout=30) as c:
        paid = (await c.get(f"{stack.urls['cash_application']}/v1/payments/{receipt['payment_id']}")).json()
    assert [(a["invoice_id"], a["amount"], a["rule"]) for a in paid["applications"]] == [(invoice, "12.34", "manual")]

    # A lockbox file paying one of camille's customer's open invoices.
    customer = list(stack.book["customers"].values())[3]
    target = next(i for i in stack.book["invoices"][customer] if i["open"])
    lockbox = ("receipt_id,value_date,amount,currency,payer_name,customer_id,invoice_reference,reason_code\n"
               f"CHK-{uuid.uuid4().hex[:8]},{date.today().isoformat()},{target['amount']},USD,"
               f"{stack.book['names'][customer]},{customer},{target['number']},\n")
    await page.goto(f"{stack.url}/cash")
    form = page.get_by_test_id("upload-form")
    await form.get_by_label("Format").select_option("csv")
    await form.get_by_label("File").set_input_files(
        files=[{"name": "lockbox.csv", "mimeType": "text/csv", "buffer": lockbox.encode()}])
    await form.get_by_test_id("upload").click()
    await page.wait_for_selector("[data-testid=import-result]")
    assert await page.get_by_test_id("count-receipts").text_content() == "1"
    assert await page.get_by_test_id("import-status").all_text_contents() == ["applied"]
    await check_accessibility(page, "cash-import")
    await snapshot(page, stack, "cash-import")

    # A collector has no cash pages and cannot apply cash by hand-made request.
    alice = await new_page(browser, stack)
    await sign_in(alice, stack, "alice")
    assert await alice.get_by_test_id("nav-cash").count() == 0
    assert (await alice.goto(f"{stack.url}/cash")).status == 403
    refused = await alice.request.post(f"{stack.url}/cash/payments/{receipt['payment_id']}/applications",
                                       form={"csrf_token": await _csrf(alice), "pick": invoice,
                                             f"amount_{invoice}": "1.00"})
    assert refused.status == 403
    assert page.errors == []  # type: ignore[attr-defined]


async def test_a_dispute_analyst_resolves_a_dispute_from_the_queue(stack, browser):
    customer = list(stack.book["customers"].values())[2]
    invoice = next(i for i in stack.book["invoices"][customer] if i["open"])
    async with httpx.AsyncClient(headers=stack.api, timeout=30) as c:
        async def opened():
            r = await c.post(f"{stack.urls['disputes']}/v1/disputes", headers={"Idempotency-Key": f"wb-{invoice['invoice_id']}"},
                             json={"invoice_id": invoice["invoice_id"], "amount": "5.00", "reason_code": "QUANTITY",
                                   "description": "two cases short"})
            return r.json() if r.status_code in (200, 201) else None
        dispute = await eventually(opened, timeout=60)
    page = await new_page(browser, stack)
    await sign_in(page, stack, "dora")
    assert page.url.endswith("/disputes")
    row = page.locator(f"tr[data-dispute='{dispute['dispute_id']}']")
    assert await row.locator("td[data-amount]").get_attribute("data-amount") == "5.00"
    await check_accessibility(page, "disputes-queue")
    await snapshot(page, stack, "disputes-queue")
    await page.get_by_test_id(f"open-dispute-{dispute['dispute_id']}").click()
    await page.wait_for_url(f"**/disputes/{dispute['dispute_id']}")
    form = page.get_by_test_id("resolve-form")
    await form.get_by_label("Resolution").select_option("partial_credit")
    await form.get_by_label("Credit amount (USD)").fill("2.50")
    await form.get_by_label("Note").fill("two cases were delivered late, not short")
    await form.get_by_test_id("resolve").click()
    await page.wait_for_selector("[data-testid=saved]")
    assert "$2.50" in await page.get_by_test_id("resolution").text_content()
    assert "dora" in await page.get_by_test_id("dispute-timeline").text_content()
    await check_accessibility(page, "dispute")
    await snapshot(page, stack, "dispute")
    async with httpx.AsyncClient(headers=stack.api, timeout=30) as c:
        steps = (await c.get(f"{stack.urls['disputes']}/v1/disputes/{dispute['dispute_id']}/timeline")).json()["data"]
    assert [(s["event_type"], s["actor"]) for s in steps][-1] == ("DisputeResolved", "dora")

    alice = await new_page(browser, stack)
    await sign_in(alice, stack, "alice")
    assert await alice.get_by_test_id("nav-disputes").count() == 0
    refused = await alice.request.post(f"{stack.url}/disputes/{dispute['dispute_id']}/resolution",
                                       form={"csrf_token": await _csrf(alice), "resolution": "credit"})
    assert refused.status == 403
    assert page.errors == []  # type: ignore[attr-defined]


async def test_the_manager_approves_a_write_off_and_exports_to_excel(stack, browser):
    customer = list(stack.book["customers"].values())[1]
    invoice = next(i for i in stack.book["invoices"][customer] if i["open"])
    async with httpx.AsyncClient(headers=stack.api, timeout=30) as c:
        r = await c.put(f"{stack.urls['collections']}/v1/approvers/maria", json={"role": "manager"})
        assert r.status_code == 200, r.text

        async def requested():
            r = await c.post(f"{stack.urls['collections']}/v1/write-offs",
                             headers={"Idempotency-Key": f"wb-wo-{invoice['invoice_id']}"},
                             json={"invoice_id": invoice["invoice_id"], "amount": "1.00",
                                   "reason": "rounding difference", "requested_by": "test-loader"})
            return r.json() if r.status_code in (200, 201) else None
        write_off = await eventually(requested, timeout=60)
    page = await new_page(browser, stack)
    await sign_in(page, stack, "maria")
    assert page.url.endswith("/manager")
    assert await page.locator(f"tr[data-write-off='{write_off['write_off_id']}']").count() == 1
    await check_accessibility(page, "manager")
    await snapshot(page, stack, "manager")

    export = await page.request.get(f"{stack.url}/export/write-offs.xlsx")
    assert export.status == 200
    sheet = load_workbook(io.BytesIO(await export.body())).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:5] == ("Write-off", "Invoice", "Customer id", "Currency", "Amount")
    mine = [r for r in rows[1:] if r[0] == write_off["write_off_id"]]
    assert len(mine) == 1 and Decimal(str(mine[0][4])) == Decimal("1.00") and mine[0][8] == "requested"

    await page.get_by_test_id(f"approve-{write_off['write_off_id']}").click()
    await page.wait_for_selector("[data-testid=saved]")
    async with httpx.AsyncClient(headers=stack.api, timeout=30) as c:
        decided = (await c.get(f"{stack.urls['collections']}/v1/write-offs/{write_off['write_off_id']}")).json()
    assert (decided["status"], decided["decided_by"]) == ("approved", "maria")

    # The collector's own worklist exports too; but approving is not the collector's.
    alice = await new_page(browser, stack)
    await sign_in(alice, stack, "alice")
    assert await alice.get_by_test_id("nav-manager").count() == 0
    worklist = await alice.request.get(f"{stack.url}/export/worklist.xlsx")
    assert worklist.status == 200
    assert list(load_workbook(io.BytesIO(await worklist.body())).active.iter_rows(values_only=True))[0][0] == "Customer id"
    refused = await alice.request.post(f"{stack.url}/manager/write-offs/{write_off['write_off_id']}/approval",
                                       form={"csrf_token": await _csrf(alice)})
    assert refused.status == 403
    assert (await alice.request.get(f"{stack.url}/export/write-offs.xlsx")).status == 403
    assert page.errors == []  # type: ignore[attr-defined]
