"""The AR manager's DSO and CEI trends (reporting's KPI trend as a table and two inline SVG
charts, exported to Excel) and the admin's user administration (create a user with a role,
reset a password, deactivate and reactivate), in headless Chromium through the real services.
Other roles get no link and a 403."""
from __future__ import annotations

import io
import re
import uuid
from datetime import date
from decimal import Decimal

import httpx
import pytest
from openpyxl import load_workbook

from tests.workbench.conftest import check_accessibility, new_page, sign_in, snapshot

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_manager_reads_dso_and_cei_trends_and_exports_them(stack, browser):
    page = await new_page(browser, stack)
    await sign_in(page, stack, "maria")
    await page.get_by_test_id("nav-trends").click()
    await page.wait_for_url("**/manager/trends")
    rows = page.locator("[data-testid=trend-table] tbody tr")
    assert await rows.count() == 12
    first, last = await rows.first.get_attribute("data-period"), await rows.last.get_attribute("data-period")
    async with httpx.AsyncClient(headers=stack.api, timeout=30) as c:
        body = (await c.get(f"{stack.urls['reporting']}/v1/reports/kpis/trend", params={
            "from": f"{first}-01", "to": date.today().isoformat(), "interval": "month",
            "currency": "USD"})).json()
    expected = {p["from"][:7]: (p["dso"], p["cei"]) for p in body["periods"]}
    shown = {await r.get_attribute("data-period"): (await r.locator("td[data-dso]").get_attribute("data-dso") or None,
                                                    await r.locator("td[data-cei]").get_attribute("data-cei") or None)
             for r in await rows.all()}
    assert shown == expected and last == max(expected)
    assert any(d is not None for d, _ in shown.values())  # the book has credit sales in these months
    # The chart draws the table's values (one dot per known DSO) and names itself.
    dots = page.locator("[data-testid=chart-dso] circle")
    assert sorted([await d.get_attribute("data-value") for d in await dots.all()]) == sorted(
        d for d, _ in shown.values() if d is not None)
    assert await page.locator("[data-testid=chart-dso]").get_attribute("role") == "img"
    await check_accessibility(page, "manager-trends")
    await snapshot(page, stack, "manager-trends")

    await page.get_by_label("Interval").select_option("quarter")
    await page.get_by_label("Periods").select_option("6")
    await page.get_by_test_id("show-trend").click()
    await page.wait_for_url(re.compile(r"interval=quarter&periods=6"))
    assert await rows.count() == 6 and re.fullmatch(r"\d{4}-Q[1-4]", await rows.first.get_attribute("data-period"))

    export = await page.request.get(f"{stack.url}/export/trends.xlsx?interval=month&periods=12")
    assert export.status == 200
    sheet = list(load_workbook(io.BytesIO(await export.body())).active.iter_rows(values_only=True))
    assert sheet[0][:5] == ("Period", "From", "To", "Currency", "DSO (days)") and len(sheet) == 13
    for r in sheet[1:]:
        dso = expected[r[0]][0]
        assert (r[4] is None and dso is None) or Decimal(str(r[4])) == Decimal(dso)

    dora = await new_page(browser, stack)
    await sign_in(dora, stack, "dora")
    assert (await dora.goto(f"{stack.url}/manager/trends")).status == 403
    assert (await dora.request.get(f"{stack.url}/export/trends.xlsx")).status == 403
    assert page.errors == []  # type: ignore[attr-defined]


async def test_the_admin_creates_resets_deactivates_and_reactivates_a_user(stack, browser):
    name = f"bob{uuid.uuid4().hex[:6]}"
    first_password, second_password = "first-password-2026", "second-password-2026"
    admin = await new_page(browser, stack)
    await sign_in(admin, stack, "admin")
    await admin.get_by_test_id("nav-users").click()
    await admin.wait_for_url("**/admin/users")
    form = admin.get_by_test_id("create-user-form")
    await form.get_by_label("Username").fill(name)
    await form.get_by_label("Display name").fill("Bob Cash")
    await form.get_by_label("Role").select_option("cash_applier")
    await form.get_by_label("Language").select_option("fr")
    await form.get_by_label("Password").fill(first_password)
    await form.get_by_test_id("create-user").click()
    await admin.wait_for_selector("[data-testid=saved]")
    row = admin.locator(f"tr[data-user='{name}']")
    assert await row.locator("td[data-role]").get_attribute("data-role") == "cash_applier"
    await check_accessibility(admin, "admin-users")
    await snapshot(admin, stack, "admin-users")

    # The new person works in French on the cash applier's page.
    bob = await new_page(browser, stack)
    await sign_in(bob, stack, name, first_password)
    assert bob.url.endswith("/cash") and await bob.locator("h1").text_content() == "Encaissements non affectés"

    # A reset ends Bob's session; the old password no longer works, the new one does.
    await row.get_by_label(re.compile("New password")).fill(second_password)
    await row.get_by_role("button", name="Reset password").click()
    await admin.wait_for_selector("[data-testid=saved]")
    await bob.goto(f"{stack.url}/cash")
    assert "/login" in bob.url
    await sign_in(bob, stack, name, first_password)
    assert await bob.get_by_test_id("login-error").count() == 1
    await sign_in(bob, stack, name, second_password)
    assert bob.url.endswith("/cash")

    # Deactivated: the session ends and signing in fails; reactivated: it works again.
    await admin.get_by_test_id(f"deactivate-{name}").click()
    await admin.wait_for_selector("[data-testid=saved]")
    assert await admin.locator(f"tr[data-user='{name}'] td[data-active]").get_attribute("data-active") == "false"
    await bob.goto(f"{stack.url}/cash")
    assert "/login" in bob.url
    await sign_in(bob, stack, name, second_password)
    assert await bob.get_by_test_id("login-error").count() == 1
    await admin.get_by_test_id(f"reactivate-{name}").click()
    await admin.wait_for_selector("[data-testid=saved]")
    await sign_in(bob, stack, name, second_password)
    assert bob.url.endswith("/cash")
    changes = [await c.get_attribute("data-change")
               for c in await admin.locator("[data-testid=user-changes] td[data-change]").all()][:4]
    assert changes == ["reactivated", "deactivated", "password_reset", "created"]

    export = await admin.request.get(f"{stack.url}/export/users.xlsx")
    sheet = list(load_workbook(io.BytesIO(await export.body())).active.iter_rows(values_only=True))
    assert sheet[0][:3] == ("Username", "Display name", "Role")
    assert [r[2:5] for r in sheet[1:] if r[0] == name] == [("cash_applier", "fr", "yes")]
    assert (await bob.request.get(f"{stack.url}/export/users.xlsx")).status == 403

    # Refused: a short password, a taken name, the admin deactivating itself, no CSRF token.
    csrf = await admin.locator("input[name=csrf_token]").first.get_attribute("value")
    short = await admin.request.post(f"{stack.url}/admin/users", form={
        "csrf_token": csrf, "username": f"x{name}", "display_name": "X", "role": "collector", "password": "short"})
    assert "password" in short.url or short.ok
    await admin.goto(short.url)
    assert "password" in await admin.get_by_test_id("action-error").text_content()
    taken = await admin.request.post(f"{stack.url}/admin/users", form={
        "csrf_token": csrf, "username": name, "display_name": "Again", "role": "admin", "password": "x" * 12})
    assert "already" in (await taken.text())
    assert await admin.locator(f"tr[data-user='{name}'] td[data-role]").get_attribute("data-role") == "cash_applier"
    myself = await admin.request.post(f"{stack.url}/admin/users/admin/deactivation", form={"csrf_token": csrf})
    assert "yourself" in await myself.text()
    forged = await admin.request.post(f"{stack.url}/admin/users/{name}/deactivation", form={})
    assert forged.status == 403

    # The manager has no users page and cannot create one by hand-made request.
    maria = await new_page(browser, stack)
    await sign_in(maria, stack, "maria")
    assert await maria.get_by_test_id("nav-users").count() == 0
    assert (await maria.goto(f"{stack.url}/admin/users")).status == 403
    mcsrf = await maria.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = await maria.request.post(f"{stack.url}/admin/users", form={
        "csrf_token": mcsrf, "username": "mallory", "display_name": "M", "role": "admin", "password": "y" * 16})
    assert refused.status == 403
    refused = await maria.request.post(f"{stack.url}/admin/users/{name}/password",
                                       form={"csrf_token": mcsrf, "password": "z" * 16})
    assert refused.status == 403
    assert admin.errors == [] and bob.errors == []  # type: ignore[attr-defined]


async def test_the_admin_changes_a_users_role_and_the_next_request_gets_the_new_roles_pages(stack, browser):
    name = f"eve{uuid.uuid4().hex[:6]}"
    password = "eve-password-2026"
    admin = await new_page(browser, stack)
    await sign_in(admin, stack, "admin")
    await admin.goto(f"{stack.url}/admin/users")
    form = admin.get_by_test_id("create-user-form")
    await form.get_by_label("Username").fill(name)
    await form.get_by_label("Display name").fill("Eve Collector")
    await form.get_by_label("Role").select_option("collector")
    await form.get_by_label("Password").fill(password)
    await form.get_by_test_id("create-user").click()
    await admin.wait_for_selector("[data-testid=saved]")

    eve = await new_page(browser, stack)
    await sign_in(eve, stack, name, password)
    assert eve.url.endswith("/worklist")
    assert (await eve.goto(f"{stack.url}/disputes")).status == 403

    # The admin makes Eve a dispute analyst working in French, under another name.
    row = admin.locator(f"tr[data-user='{name}']")
    await row.get_by_test_id(f"edit-{name}").locator("summary").click()
    await row.get_by_label("Display name").fill("Ève Litiges")
    await row.get_by_label("Role").select_option("dispute_analyst")
    await row.get_by_label("Language").select_option("fr")
    await check_accessibility(admin, "admin-users-edit")
    await snapshot(admin, stack, "admin-users-edit")
    await row.get_by_test_id(f"save-{name}").click()
    await admin.wait_for_selector("[data-testid=saved]")
    row = admin.locator(f"tr[data-user='{name}']")
    assert await row.locator("td[data-role]").get_attribute("data-role") == "dispute_analyst"
    changes = [(await c.get_attribute("data-change"), await c.text_content())
               for c in await admin.locator("[data-testid=user-changes] tr").filter(has_text=name)
               .locator("td[data-change]").all()]
    assert [c for c, _ in changes[:3]] == ["renamed", "locale_changed", "role_changed"]
    assert "collector → dispute_analyst" in changes[2][1]

    # Eve's same session: her next request has the new role's pages (and no longer the old ones), in French.
    assert (await eve.goto(f"{stack.url}/disputes")).status == 200
    assert await eve.locator("h1").text_content() != "Disputes and deductions"
    assert await eve.locator("html").get_attribute("lang") == "fr"
    assert "Ève Litiges" in await eve.locator("body").text_content()
    assert (await eve.goto(f"{stack.url}/worklist")).status == 403
    await eve.goto(f"{stack.url}/")
    assert eve.url.endswith("/disputes")

    # Saving unchanged values changes nothing; the admin cannot change its own role; no CSRF: 403.
    csrf = await admin.locator("input[name=csrf_token]").first.get_attribute("value")
    same = await admin.request.post(f"{stack.url}/admin/users/{name}/profile", form={
        "csrf_token": csrf, "display_name": "Ève Litiges", "role": "dispute_analyst", "locale": "fr"})
    assert "unchanged" in await same.text()
    bad = await admin.request.post(f"{stack.url}/admin/users/{name}/profile", form={
        "csrf_token": csrf, "display_name": "Eve", "role": "root", "locale": "fr"})
    assert "role: one of" in await bad.text()
    own = await admin.request.post(f"{stack.url}/admin/users/admin/profile", form={
        "csrf_token": csrf, "display_name": "Ada Admin", "role": "collector", "locale": "en"})
    assert "your own role" in await own.text()
    forged = await admin.request.post(f"{stack.url}/admin/users/{name}/profile", form={
        "display_name": "Eve", "role": "admin", "locale": "en"})
    assert forged.status == 403

    # A non-admin (Eve herself, now a dispute analyst, and the manager) has no edit button and gets 403.
    ecsrf = await eve.locator("input[name=csrf_token]").first.get_attribute("value")
    for person, token in ((eve, ecsrf),):
        assert await person.get_by_test_id("nav-users").count() == 0
        refused = await person.request.post(f"{stack.url}/admin/users/{name}/profile", form={
            "csrf_token": token, "display_name": "Eve", "role": "admin", "locale": "en"})
        assert refused.status == 403
    maria = await new_page(browser, stack)
    await sign_in(maria, stack, "maria")
    assert (await maria.goto(f"{stack.url}/admin/users")).status == 403
    assert await maria.get_by_test_id(f"save-{name}").count() == 0
    mcsrf = await maria.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = await maria.request.post(f"{stack.url}/admin/users/{name}/profile", form={
        "csrf_token": mcsrf, "display_name": "Eve", "role": "admin", "locale": "en"})
    assert refused.status == 403
    await admin.reload()
    assert await admin.locator(f"tr[data-user='{name}'] td[data-role]").get_attribute("data-role") == "dispute_analyst"
    assert admin.errors == []  # type: ignore[attr-defined]  (Eve and Maria were refused on purpose: 403s logged)
