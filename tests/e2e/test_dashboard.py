"""The dashboard in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright)
against the reporting service running as its own process with API keys configured: the page
and its API calls carry the key (here as a browser-wide header, as a gateway would add it),
every figure shown equals what the API answers, and a screenshot is kept as an artifact
(artifacts/dashboard/dashboard.png)."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from playwright.async_api import async_playwright

from shared.auth import key_hash
from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import (
    CollectorAssigned,
    CustomerRegistered,
    InvoiceIssued,
    InvoiceLine,
    PaymentApplied,
    PromiseToPayMade,
    topic_for,
)
from services.reporting.main import definition
from services.reporting.projections.facts import project
from services.reporting.settings import ReportingSettings
from shared.service import Runtime
from tests.support.infra import fresh_database, sqlalchemy_url
from tests.support.platform import free_port

ROOT = Path(__file__).resolve().parents[2]
KEY = "dashboard-test-key"
AS_OF = "2024-03-31"


def _event(contract, n: int) -> ReceivedEvent:
    return ReceivedEvent(event_id=f"dash-{n}", event_type=contract.event_type, schema_version=contract.schema_version,
                         source="", subject="", occurred_at=None, data=contract.to_payload(), headers={},
                         topic=topic_for(contract.context), partition=0, offset=n)


def _book() -> list:
    """Three customers invoiced every 10 days from October to March, net 30; Acme pays each
    invoice 20 days late, Globex on time until January, Initech never; one open promise."""
    events: list = [CustomerRegistered(customer_id=c, name=name, currency="USD", payment_terms_days=30,
                                       credit_limit="100000.00", registered_on="2023-01-01")
                    for c, name in (("C1", "Acme"), ("C2", "Globex"), ("C3", "Initech"))]
    events += [CollectorAssigned(customer_id=c, collector_id="alice", assigned_on="2023-01-01") for c in ("C1", "C2")]
    day, n = date(2023, 10, 1), 0
    while day <= date(2024, 3, 25):
        for customer, amount, late in (("C1", "1200.00", 20), ("C2", "850.50", 0), ("C3", "430.25", None)):
            n += 1
            due = day + timedelta(days=30)
            invoice_id = f"INV-{n}"
            events.append(InvoiceIssued(invoice_id=invoice_id, invoice_number=f"N{n}", customer_id=customer,
                                        currency="USD", issue_date=day, due_date=due, total_amount=amount,
                                        lines=[InvoiceLine(description="x", quantity="1", unit_price=amount,
                                                           amount=amount)]))
            paid_on = None if late is None or (customer == "C2" and day >= date(2024, 1, 1)) else due + timedelta(late)
            if paid_on is not None and paid_on <= date(2024, 3, 31):
                events.append(PaymentApplied(payment_id=f"P{n}", invoice_id=invoice_id, customer_id=customer,
                                             amount=amount, currency="USD", value_date=paid_on,
                                             application_id=f"A{n}", rule="remittance", confidence="1"))
        day += timedelta(days=10)
    events.append(PromiseToPayMade(promise_id="PR1", customer_id="C3", invoice_ids=["INV-3"], amount="430.25",
                                   currency="USD", promise_date="2024-04-12", made_on="2024-03-28", grace_days=0))
    return [_event(e, i) for i, e in enumerate(events)]


async def _serve(database: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    keys = json.dumps({key_hash(KEY): {"actor": "dashboard", "scopes": ["reporting:read"]}})
    env = {**os.environ, "LEDGERLINE_REPORTING_DATABASE_URL": sqlalchemy_url(database),
           "LEDGERLINE_REPORTING_PORT": str(port), "LEDGERLINE_REPORTING_ROLE": "api",
           "LEDGERLINE_REPORTING_API_KEYS": keys, "LEDGERLINE_REPORTING_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "services.reporting", "serve"], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(300):
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"reporting did not start:\n{log.read_text()[-3000:]}")


async def test_dashboard_shows_the_apis_figures_in_headless_chromium(artifacts_dir):
    out = artifacts_dir / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    async with fresh_database("dash") as database:
        d = definition(ReportingSettings(database_url=sqlalchemy_url(database)))
        d.state["clock"] = FixedClock(date(2024, 3, 31))
        runtime = Runtime(d)
        await runtime.migrate()
        for event in _book():
            async with runtime.engine.begin() as conn:
                await project(conn, event)
        await runtime.dispose()
        proc, url = await _serve(database, out / "reporting.log")
        try:
            auth = {"Authorization": f"Bearer {KEY}"}
            async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as api:
                assert (await httpx.AsyncClient(base_url=url).get("/dashboard")).status_code == 401

                async def get(path: str, **params) -> dict:
                    r = await api.get(path, params={"currency": "USD", **params})
                    assert r.status_code == 200, r.text
                    return r.json()

                summary = await get("/v1/reports/summary", as_of=AS_OF)
                month = await get("/v1/reports/kpis", **{"from": "2024-03-01", "to": AS_OF})
                trend = await get("/v1/reports/kpis/trend", **{"from": "2023-10-01", "to": AS_OF})
                forecast = await get("/v1/reports/forecast", as_of=AS_OF)
                aging = await get("/v1/reports/aging", as_of=AS_OF)
                overdue = await get("/v1/reports/aging/top-overdue", as_of=AS_OF, limit=10)
                ends = ["2023-10-31", "2023-11-30", "2023-12-31", "2024-01-31", "2024-02-29", AS_OF]
                history = {e: await get("/v1/reports/aging", as_of=e) for e in ends}

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
                context = await browser.new_context(extra_http_headers=auth, viewport={"width": 1400, "height": 1000})
                page = await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(f"{url}/dashboard?as_of={AS_OF}&currency=USD")
                status = page.get_by_test_id("status")
                await page.wait_for_function(
                    "() => ['up to date'].includes(document.querySelector('[data-testid=status]').textContent)"
                    " || document.querySelector('[data-testid=status]').className === 'error'", timeout=20000)
                assert await status.text_content() == "up to date", await status.text_content()

                async def shown(test_id: str) -> str:
                    return await page.get_by_test_id(test_id).text_content()

                assert await shown("total-open") == summary["total_open_balance"]
                assert await shown("past-due") == summary["past_due"]
                assert await shown("unapplied") == summary["unapplied_cash"]
                assert await shown("dso") == month["dso"]
                assert await shown("cei") == month["cei"]
                assert await shown("add") == month["average_days_delinquent"]
                assert Decimal(summary["past_due"]) > 0 and month["dso"] is not None

                for end, body in history.items():
                    for label, amount in body["buckets"].items():
                        bar = page.get_by_test_id(f"aging-{end}-{label}")
                        assert await bar.get_attribute("data-amount") == amount, (end, label)
                for period in trend["periods"]:
                    for key in ("dso", "average_days_delinquent", "cei"):
                        dot = page.get_by_test_id(f"trend-{key}-{period['from'][:7]}")
                        assert await dot.get_attribute("data-value") == (period[key] or ""), (period["from"], key)
                for week in forecast["weeks"]:
                    for source in ("invoices", "promises", "plans"):
                        bar = page.get_by_test_id(f"forecast-{week['week']}-{source}")
                        assert await bar.get_attribute("data-amount") == week[source]
                assert await shown("forecast-total") == forecast["total"]

                rows = await page.locator("[data-testid=top-overdue] tbody tr").all()
                assert len(rows) == len(overdue["customers"]) >= 2
                for row, c in zip(rows, overdue["customers"]):
                    assert await row.locator("td").all_text_contents() == [
                        c["customer_name"], c["past_due"], c["over_90"], c["total"]]
                # ... and the top-overdue list agrees with the full aging, customer by customer.
                by_customer = {c["customer_id"]: c for c in aging["customers"]}
                for c in overdue["customers"]:
                    full = by_customer[c["customer_id"]]
                    assert Decimal(c["past_due"]) == Decimal(full["total"]) - Decimal(full["buckets"]["current"])
                    assert (c["over_90"], c["total"]) == (full["buckets"]["90+"], full["total"])

                await page.get_by_label("As of").fill("2024-01-31")
                await page.get_by_label("As of").dispatch_event("change")
                await page.wait_for_function(
                    "() => document.querySelector('[data-testid=as-of]').textContent.startsWith('2024-01-31')")
                await page.wait_for_function(
                    "() => document.querySelector('[data-testid=status]').textContent === 'up to date'")
                assert await shown("total-open") == history["2024-01-31"]["total"]
                await page.get_by_label("As of").fill(AS_OF)
                await page.get_by_label("As of").dispatch_event("change")
                await page.wait_for_function(
                    "() => document.querySelector('[data-testid=as-of]').textContent.startsWith('2024-03-31')"
                    " && document.querySelector('[data-testid=status]').textContent === 'up to date'")
                await page.screenshot(path=str(out / "dashboard.png"), full_page=True)
                assert errors == []
                await browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    assert (out / "dashboard.png").stat().st_size > 10_000
