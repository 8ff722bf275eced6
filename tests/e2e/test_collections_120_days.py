"""120 days of a small portfolio through the running platform, with daily dunning runs as of
each day over HTTP, a real local SMTP server receiving the emails, and reporting's figures.

- acme (en) never pays: every step of the default strategy on its day, then a write-off
  approved by a controller, after which the credit hold is released and reporting counts it.
- bistro (fr) has two invoices; a week without runs is caught up with one consolidated
  notice; it then promises and pays (promise kept).
- corner is do-not-contact: every contact step is blocked with the reason, escalation and
  credit hold still happen; its promise is broken.
- delta is a 'strict' customer type (1 contact per 7 days): the cap holds."""
from __future__ import annotations

import io
import uuid
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import httpx
from pypdf import PdfReader

from tests.support.platform import eventually, running_platform
from tests.support.smtp import smtp_server

RUN = uuid.uuid4().hex[:6]
START, END = date(2024, 1, 1), date(2024, 4, 29)            # 120 days
SKIPPED = (date(2024, 2, 10), date(2024, 2, 20))             # no runs these days


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def post(client: httpx.AsyncClient, url: str, body: dict, expect: int = 201) -> dict:
    r = await client.post(url, json=body, headers=key())
    assert r.status_code == expect, f"{url}: {r.status_code} {r.text}"
    return r.json()


async def test_120_days_of_collections(artifacts_dir: Path):
    with smtp_server() as smtp:
        async with running_platform(artifacts_dir / "e2e-collections-logs",
                                    extra_env={"LEDGERLINE_COLLECTIONS_SMTP_PORT": str(smtp.port)}) as platform:
            await _play(platform, smtp)


async def _play(platform, smtp) -> None:
    inv_url, cash_url = platform.urls["invoicing"], platform.urls["cash_application"]
    col_url, rep_url = platform.urls["collections"], platform.urls["reporting"]
    ids = {name: f"{name}-{RUN}" for name in ("acme", "bistro", "corner", "delta")}
    async with httpx.AsyncClient(timeout=60) as c:
        for name, customer_id in ids.items():
            await post(c, f"{inv_url}/v1/customers", {"customer_id": customer_id, "name": name.title(),
                                                      "currency": "EUR", "payment_terms_days": 30,
                                                      "credit_limit": "20000.00", "registered_on": "2023-06-01"})
        await c.put(f"{col_url}/v1/compliance-policies/strict", json={"max_attempts": 1, "window_days": 7})
        profiles = {"acme": {"language": "en", "time_zone": "Europe/London"},
                    "bistro": {"language": "fr", "time_zone": "Europe/Paris"},
                    "corner": {"do_not_contact": True}, "delta": {"customer_type": "strict"}}
        for name, profile in profiles.items():
            r = await c.put(f"{col_url}/v1/customers/{ids[name]}/profile",
                            json={"email": f"ap@{name}.example", "postal_address": "1 Main St", **profile})
            assert r.status_code == 200, r.text

        invoices = {}
        for name, number, issued, amount in (
                ("acme", "A1", "2024-01-01", "5000.00"), ("bistro", "B1", "2024-01-06", "1200.00"),
                ("bistro", "B2", "2024-01-13", "800.00"), ("corner", "C1", "2024-01-16", "700.00"),
                ("delta", "D1", "2024-01-02", "300.00"), ("delta", "D2", "2024-01-04", "300.00"),
                ("delta", "D3", "2024-01-06", "300.00")):
            invoices[number] = (await post(c, f"{inv_url}/v1/invoices", {
                "customer_id": ids[name], "invoice_number": f"{number}-{RUN}", "issue_date": issued,
                "lines": [{"description": "Goods", "quantity": "1", "unit_price": amount}]}))["invoice_id"]

        async def collections_knows_all():
            counts = []
            for customer_id in ids.values():
                r = await c.get(f"{col_url}/v1/customers/{customer_id}", params={"as_of": "2024-01-31"})
                counts.append(len(r.json().get("open_invoices", [])) if r.status_code == 200 else 0)
            return counts == [1, 2, 1, 3]
        await eventually(collections_knows_all)

        async def settled(customer_id: str, as_of: date):
            r = await c.get(f"{col_url}/v1/customers/{customer_id}", params={"as_of": as_of.isoformat()})
            return r.status_code == 200 and r.json()["open_invoices"] == []

        runs = 0
        day = START
        while day <= END:
            if day == date(2024, 2, 22):
                await post(c, f"{col_url}/v1/promises", {
                    "customer_id": ids["bistro"], "invoice_ids": [invoices["B1"], invoices["B2"]], "amount": "2000.00",
                    "currency": "EUR", "made_on": "2024-02-22", "promise_date": "2024-03-01", "grace_days": 0})
            if day == date(2024, 2, 28):
                await post(c, f"{cash_url}/v1/payments", {
                    "customer_id": ids["bistro"], "amount": "2000.00", "currency": "EUR", "value_date": "2024-02-28",
                    "method": "wire", "remittance": [{"invoice_id": invoices["B1"], "amount": "1200.00"},
                                                     {"invoice_id": invoices["B2"], "amount": "800.00"}]})
                await eventually(lambda: settled(ids["bistro"], day))
            if day == date(2024, 3, 1):
                await post(c, f"{col_url}/v1/promises", {
                    "customer_id": ids["corner"], "invoice_ids": [invoices["C1"]], "amount": "700.00",
                    "currency": "EUR", "made_on": "2024-03-01", "promise_date": "2024-03-05", "grace_days": 0})
            if day == date(2024, 4, 15):
                for approver, role in (("mia", "manager"), ("carl", "controller")):
                    await c.put(f"{col_url}/v1/approvers/{approver}", json={"role": role})
                wo = await post(c, f"{col_url}/v1/write-offs", {
                    "invoice_id": invoices["A1"], "reason": "customer insolvent", "requested_by": "mia",
                    "requested_on": "2024-04-15"})
                refused = await c.post(f"{col_url}/v1/write-offs/{wo['write_off_id']}/approval", headers=key(),
                                       json={"approved_by": "mia", "approved_on": "2024-04-15"})
                assert refused.status_code == 422
                too_big = await c.post(f"{col_url}/v1/write-offs/{wo['write_off_id']}/approval", headers=key(),
                                       json={"approved_by": "nobody", "approved_on": "2024-04-15"})
                assert too_big.status_code == 422
                await post(c, f"{col_url}/v1/write-offs/{wo['write_off_id']}/approval",
                           {"approved_by": "carl", "approved_on": "2024-04-15"})
            if not SKIPPED[0] <= day <= SKIPPED[1]:
                await post(c, f"{col_url}/v1/dunning-runs", {"as_of": day.isoformat()}, expect=200)
                runs += 1
            day += timedelta(days=1)
        assert runs == 109

        notices = (await c.get(f"{col_url}/v1/notices", params={"limit": 500})).json()["data"]
        tasks = (await c.get(f"{col_url}/v1/call-tasks")).json()["data"]
        escalations = (await c.get(f"{col_url}/v1/escalations")).json()["data"]
        holds = (await c.get(f"{col_url}/v1/credit-holds")).json()["data"]
        blocked = (await c.get(f"{col_url}/v1/blocked-actions")).json()["data"]

        def timeline(customer: str) -> list[tuple[str, str, str]]:
            cid = ids[customer]
            rows = [(n["sent_on"], n["channel"], n["step_id"]) for n in notices if n["customer_id"] == cid]
            rows += [(t["due_on"], "call_task", t["step_id"]) for t in tasks if t["customer_id"] == cid]
            rows += [(e["escalated_on"], "escalation", e["recommended_action"]) for e in escalations
                     if e["customer_id"] == cid]
            rows += [(h["placed_on"], "credit_hold", "placed") for h in holds if h["customer_id"] == cid]
            rows += [(h["released_on"], "credit_hold", "released") for h in holds
                     if h["customer_id"] == cid and h["released_on"]]
            return sorted(rows)

        # Exactly the default strategy's steps, on their days.
        assert timeline("acme") == [
            ("2024-01-28", "email", "reminder"), ("2024-02-07", "email", "first_notice"),
            ("2024-02-21", "email", "second_notice"), ("2024-03-01", "call_task", "call"),
            ("2024-03-16", "letter", "final_demand"), ("2024-03-31", "credit_hold", "placed"),
            ("2024-03-31", "escalation", "payment_plan"), ("2024-04-15", "credit_hold", "released")]
        # The skipped week: one consolidated first notice listing both invoices.
        assert timeline("bistro") == [("2024-02-02", "email", "reminder"), ("2024-02-09", "email", "reminder"),
                                      ("2024-02-21", "email", "first_notice")]
        catch_up = next(n for n in notices if n["customer_id"] == ids["bistro"] and n["step_id"] == "first_notice")
        assert sorted(catch_up["invoice_ids"]) == sorted([invoices["B1"], invoices["B2"]])
        assert catch_up["total_amount"] == "2000.00" and catch_up["language"] == "fr"
        # Do-not-contact: no contact at all, each contact step blocked once with its reason.
        assert [(d, ch) for d, ch, _ in timeline("corner")] == [("2024-04-15", "credit_hold"),
                                                                ("2024-04-15", "escalation")]
        corner_blocks = [(b["blocked_on"], b["step_id"], b["reason"]) for b in blocked
                         if b["customer_id"] == ids["corner"]]
        assert corner_blocks == [("2024-02-21", "reminder", "do_not_contact"),
                                 ("2024-02-22", "first_notice", "do_not_contact"),
                                 ("2024-03-07", "second_notice", "do_not_contact"),
                                 ("2024-03-16", "call", "do_not_contact"),
                                 ("2024-03-31", "final_demand", "do_not_contact")]
        # The cap holds for everyone: at most 7 contacts in any 7 days, and 1 for the strict type.
        for name, customer_id in ids.items():
            contacts = [date.fromisoformat(n["sent_on"]) for n in notices if n["customer_id"] == customer_id]
            contacts += [date.fromisoformat(t["due_on"]) for t in tasks if t["customer_id"] == customer_id]
            cap = 1 if name == "delta" else 7
            for first in contacts:
                assert sum(1 for d in contacts if first <= d < first + timedelta(days=7)) <= cap, (name, first)
        assert any(b["reason"] == "frequency_cap" for b in blocked if b["customer_id"] == ids["delta"])
        # None twice: each (customer, step, invoice) once in the ledger, and again-runs add nothing.
        actions = (await c.get(f"{col_url}/v1/dunning-actions")).json()["data"]
        assert not [k for k, n in Counter((a["customer_id"], a["step_id"], a["invoice_id"]) for a in actions).items()
                    if n > 1]
        for again in ("2024-02-21", "2024-03-31", "2024-04-15"):
            result = await post(c, f"{col_url}/v1/dunning-runs", {"as_of": again}, expect=200)
            assert result["notices"] == result["call_tasks"] == result["escalations"] == result["blocked"] == []
        assert len((await c.get(f"{col_url}/v1/notices", params={"limit": 500})).json()["data"]) == len(notices)

        # Every email notice arrived once, with its PDF naming its invoices.
        emails = [n for n in notices if n["channel"] == "email"]
        assert all(n["delivery"] == "sent" for n in emails)
        received = smtp.messages
        assert sorted(m.message_id for m in received) == sorted(f"<{n['notice_id']}@ledgerline.collections>"
                                                                for n in emails)
        french = next(m for m in received if m.message_id == f"<{catch_up['notice_id']}@ledgerline.collections>")
        assert french.rcpt_tos == ["ap@bistro.example"] and french.subject.startswith("Relance")
        [(_, pdf)] = french.pdfs()
        page = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
        assert f"B1-{RUN}" in page and f"B2-{RUN}" in page and "2000.00 EUR" in page

        promises = (await c.get(f"{col_url}/v1/promises")).json()["data"]
        assert sorted((p["customer_id"], p["status"]) for p in promises) == [(ids["bistro"], "kept"),
                                                                            (ids["corner"], "broken")]

        # Reporting: the promise figures and the write-off as bad debt.
        async def promise_figures():
            r = await c.get(f"{rep_url}/v1/reports/promises",
                            params={"from": "2024-02-01", "to": "2024-04-30", "currency": "EUR"})
            body = r.json()
            return body if r.status_code == 200 and body["kept"]["count"] == 1 and body["broken"]["count"] == 1 \
                else None
        figures = await eventually(promise_figures)
        assert (figures["made"]["count"], figures["kept"]["amount"], figures["broken"]["amount"]) == \
            (2, "2000.00", "700.00")

        async def written_off():
            r = await c.get(f"{rep_url}/v1/reports/roll-forward",
                            params={"from": "2024-04-01", "to": "2024-04-30", "currency": "EUR"})
            return r.json() if r.status_code == 200 and r.json()["write_offs"] == "5000.00" else None
        april = await eventually(written_off)
        assert april["ties"] is True
