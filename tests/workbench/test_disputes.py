"""The dispute analyst's day beyond resolving, in headless Chromium through the real services:
the queue filtered by reason, age, amount and owner (by disputes, on the server); from the
dispute's page reassigning it (owner and team), a note, where the work stands, and a document
attached and downloaded again, each recorded with the analyst as the actor. The manager sees
the page but gets no button and a 403."""
from __future__ import annotations

import io
import re

import httpx
import pytest
from openpyxl import load_workbook

from tests.support.platform import eventually
from tests.workbench.conftest import check_accessibility, new_page, sign_in, snapshot

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _open(stack, invoice_id: str, amount: str, reason: str, key: str) -> dict:
    async with httpx.AsyncClient(headers=stack.api, timeout=30) as c:
        async def opened():
            r = await c.post(f"{stack.urls['disputes']}/v1/disputes", headers={"Idempotency-Key": key},
                             json={"invoice_id": invoice_id, "amount": amount, "reason_code": reason})
            return r.json() if r.status_code in (200, 201) else None
        return await eventually(opened, timeout=60)


async def _shown(page) -> list[str]:
    return [await r.get_attribute("data-dispute") for r in await page.locator("[data-testid=disputes-queue] tbody tr").all()]


async def test_a_dispute_analyst_filters_the_queue_and_works_a_dispute(stack, browser):
    customer = list(stack.book["customers"].values())[0]
    invoice = [i for i in stack.book["invoices"][customer] if i["open"]][-1]
    pricing = await _open(stack, invoice["invoice_id"], "3.00", "PRICING", f"wb-f1-{invoice['invoice_id']}")
    damaged = await _open(stack, invoice["invoice_id"], "40.00", "DAMAGED", f"wb-f2-{invoice['invoice_id']}")
    page = await new_page(browser, stack)
    await sign_in(page, stack, "dora")
    filters = page.get_by_test_id("queue-filters")

    await filters.get_by_label("Reason").select_option("PRICING")
    await filters.get_by_test_id("filter").click()
    await page.wait_for_url(re.compile(r"reason_code=PRICING"))
    shown = await _shown(page)
    assert pricing["dispute_id"] in shown and damaged["dispute_id"] not in shown
    assert {await c.get_attribute("data-reason") for c in await page.locator("td[data-reason]").all()} == {"PRICING"}

    await page.goto(f"{stack.url}/disputes?min_amount=10&max_amount=40.00")
    shown = await _shown(page)
    assert damaged["dispute_id"] in shown and pricing["dispute_id"] not in shown
    await page.goto(f"{stack.url}/disputes?min_age=1")  # both were opened today
    assert not {pricing["dispute_id"], damaged["dispute_id"]} & set(await _shown(page))
    await page.goto(f"{stack.url}/disputes?max_age=0&min_amount=junk")
    assert await page.get_by_test_id("filter-error").count() == 1
    assert {pricing["dispute_id"], damaged["dispute_id"]} <= set(await _shown(page))

    # Reassign to dora in billing, from the dispute's page.
    await page.get_by_test_id(f"open-dispute-{pricing['dispute_id']}").click()
    await page.wait_for_url(f"**/disputes/{pricing['dispute_id']}")
    form = page.get_by_test_id("assign-form")
    await form.get_by_label("Owner").fill("dora")
    await form.get_by_label("Team").select_option("billing")
    await form.get_by_test_id("assign").click()
    await page.wait_for_selector("[data-testid=saved][data-saved=assigned]")
    assert await page.get_by_test_id("dispute-owner").text_content() == "dora"
    assert await page.get_by_test_id("dispute-team").text_content() == "billing"

    form = page.get_by_test_id("status-form")
    await form.get_by_label("Status").select_option("waiting_on_customer")
    await form.get_by_label("Note").fill("asked for the signed price list")
    await form.get_by_test_id("change-status").click()
    await page.wait_for_selector("[data-testid=saved][data-saved=status]")
    assert await page.get_by_test_id("work-status").text_content() == "waiting on customer"

    form = page.get_by_test_id("note-form")
    await form.get_by_label("Note").fill("Customer's buyer confirms the 2026 price list applies")
    await form.get_by_test_id("add-note").click()
    await page.wait_for_selector("[data-testid=saved][data-saved=noted]")
    assert "2026 price list" in await page.get_by_test_id("notes").text_content()

    document = b"price list 2026\nwidget: 9.70\n"
    form = page.get_by_test_id("attach-form")
    await form.get_by_label("Kind").select_option("pricing_agreement")
    await form.get_by_label("File").set_input_files(
        files=[{"name": "price-list.txt", "mimeType": "text/plain", "buffer": document}])
    await form.get_by_test_id("attach").click()
    await page.wait_for_selector("[data-testid=saved][data-saved=attached]")
    row = page.locator("[data-testid=attachments] tbody tr")
    assert await row.count() == 1 and "price-list.txt" in await row.text_content()
    link = await row.locator("a").get_attribute("href")
    download = await page.request.get(f"{stack.url}{link}")
    assert download.status == 200 and await download.body() == document
    assert "attachment" in download.headers["content-disposition"]
    await check_accessibility(page, "dispute-worked")
    await snapshot(page, stack, "dispute-worked")

    async with httpx.AsyncClient(headers=stack.api, timeout=30) as c:
        steps = (await c.get(f"{stack.urls['disputes']}/v1/disputes/{pricing['dispute_id']}/timeline")).json()["data"]
    mine = [(s["event_type"], s["actor"]) for s in steps if s["actor"] == "dora"]
    assert [e for e, _ in mine] == ["DisputeAssigned", "DisputeStatusChanged", "DisputeNoteAdded",
                                    "DisputeAttachmentAdded"]

    # The queue by owner: dora's own, then nobody's.
    await page.goto(f"{stack.url}/disputes")
    await filters.get_by_label("Owner").fill("dora")
    await filters.get_by_test_id("filter").click()
    await page.wait_for_url(re.compile(r"owner=dora"))
    assert pricing["dispute_id"] in await _shown(page)
    assert {await c.get_attribute("data-owner") for c in await page.locator("td[data-owner]").all()} == {"dora"}
    await check_accessibility(page, "disputes-queue-filtered")
    await snapshot(page, stack, "disputes-queue-filtered")
    export = await page.request.get(f"{stack.url}/export/disputes.xlsx?owner=dora")
    rows = list(load_workbook(io.BytesIO(await export.body())).active.iter_rows(values_only=True))
    assert rows[0][-2:] == ("Owner", "Team") and {r[-2] for r in rows[1:]} == {"dora"}
    await page.goto(f"{stack.url}/disputes?owner=-")
    shown = await _shown(page)
    assert pricing["dispute_id"] not in shown and damaged["dispute_id"] in shown

    # The manager sees the dispute but may not work it.
    maria = await new_page(browser, stack)
    await sign_in(maria, stack, "maria")
    await maria.goto(f"{stack.url}/disputes/{pricing['dispute_id']}")
    for form in ("assign-form", "status-form", "note-form", "attach-form"):
        assert await maria.get_by_test_id(form).count() == 0, form
    csrf = await maria.locator("input[name=csrf_token]").first.get_attribute("value")
    for path, form in (("assignment", {"owner": "maria", "team": "sales"}), ("notes", {"text": "not mine"}),
                       ("status", {"status": "in_review"})):
        refused = await maria.request.post(f"{stack.url}/disputes/{pricing['dispute_id']}/{path}",
                                           form={"csrf_token": csrf, **form})
        assert refused.status == 403, path
    forged = await page.request.post(f"{stack.url}/disputes/{pricing['dispute_id']}/notes", form={"text": "forged"})
    assert forged.status == 403
    assert page.errors == []  # type: ignore[attr-defined]
