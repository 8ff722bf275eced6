"""The daily dunning run, notices by real SMTP, compliance, plans, holds, worklists and
write-offs, over HTTP on a real PostgreSQL database."""
from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import text

from services.collections.adapters import accounts
from services.collections.application.handlers import on_external_event
from services.collections.main import definition
from services.collections.settings import CollectionsSettings
from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import (
    CustomerRegistered,
    DeductionOpened,
    DisputeOpened,
    DisputeResolved,
    InvoiceIssued,
    InvoiceLine,
    PaymentApplied,
    PaymentUnapplied,
)
from tests.support.infra import fresh_database, idem, service_client, sqlalchemy_url
from tests.support.smtp import smtp_server

ROOT = Path(__file__).resolve().parents[3]
TODAY = date(2024, 12, 31)


@pytest.fixture
def smtp():
    with smtp_server() as server:
        yield server


@pytest.fixture
async def collections(smtp):
    def make(url):
        return definition(CollectionsSettings(database_url=url, role="api", smtp_port=smtp.port),
                          clock=FixedClock(TODAY))
    async with service_client(make) as (client, app):
        yield client, app


def _received(contract) -> ReceivedEvent:
    return ReceivedEvent(event_id=str(uuid.uuid4()), event_type=contract.event_type,
                         schema_version=contract.schema_version, source="test", subject="s", occurred_at=None,
                         data=contract.to_payload(), headers={}, topic="t", partition=0, offset=0)


async def deliver(app, contract) -> None:
    async with app.state.runtime.engine.begin() as conn:
        await on_external_event(conn, _received(contract))


async def customer(app, client, customer_id="cus-1", **profile) -> None:
    await deliver(app, CustomerRegistered(customer_id=customer_id, name=f"{customer_id} SARL", currency="EUR",
                                          payment_terms_days=30, credit_limit="10000.00", registered_on="2023-01-01"))
    body = {"email": f"ap@{customer_id}.example", "time_zone": "Europe/Paris", **profile}
    r = await client.put(f"/v1/customers/{customer_id}/profile", json=body)
    assert r.status_code == 200, r.text


async def invoice(app, invoice_id, due, total="1000.00", customer_id="cus-1") -> None:
    due = date.fromisoformat(due)
    await deliver(app, InvoiceIssued(
        invoice_id=invoice_id, invoice_number=f"N-{invoice_id}", customer_id=customer_id, currency="EUR",
        issue_date=due - timedelta(days=30), due_date=due, total_amount=total,
        lines=[InvoiceLine(description="Goods", quantity="1", unit_price=total, amount=total)]))


def payment(invoice_id, amount, value_date, customer_id="cus-1") -> PaymentApplied:
    return PaymentApplied(payment_id=f"pay-{uuid.uuid4().hex[:6]}", invoice_id=invoice_id, customer_id=customer_id,
                          amount=amount, currency="EUR", value_date=value_date, application_id=uuid.uuid4().hex,
                          rule="remittance", confidence="1")


async def run(client, as_of, **extra) -> dict:
    r = await client.post("/v1/dunning-runs", headers=idem(), json={"as_of": str(as_of), **extra})
    assert r.status_code == 200, r.text
    return r.json()


async def run_days(client, start, end) -> list[dict]:
    day, results = date.fromisoformat(start), []
    while day <= date.fromisoformat(end):
        results.append(await run(client, day))
        day += timedelta(days=1)
    return results


async def events(app, event_type=None) -> list[dict]:
    async with app.state.runtime.engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT event_type, payload, occurred_at FROM events WHERE CAST(:t AS text) IS NULL OR event_type = :t"
            " ORDER BY global_position"), {"t": event_type})
        return [dict(r) for r in rows.mappings()]


async def test_the_default_strategy_day_by_day_acts_once_per_step(collections, smtp):
    client, app = collections
    await customer(app, client)
    await invoice(app, "inv-1", "2024-01-31")
    await run_days(client, "2024-01-20", "2024-05-05")
    timeline = [(e["event_type"], e["payload"].get("step_id"), e["occurred_at"].date().isoformat())
                for e in await events(app) if e["event_type"] in
                ("DunningNoticeSent", "CallTaskCreated", "AccountEscalated", "CreditHoldPlaced")]
    assert timeline == [
        ("DunningNoticeSent", "reminder", "2024-01-28"),
        ("DunningNoticeSent", "first_notice", "2024-02-07"),
        ("DunningNoticeSent", "second_notice", "2024-02-21"),
        ("CallTaskCreated", "call", "2024-03-01"),
        ("DunningNoticeSent", "final_demand", "2024-03-16"),
        ("AccountEscalated", None, "2024-03-31"),
        ("CreditHoldPlaced", None, "2024-03-31"),
        ("AccountEscalated", None, "2024-04-30"),
    ]
    escalations = (await client.get("/v1/escalations", params={"customer_id": "cus-1"})).json()["data"]
    assert [e["recommended_action"] for e in escalations][-1] == "write_off"
    assert "1 overdue invoice(s), 1000.00 EUR" in escalations[0]["summary"]
    # Three emails arrived, each with its PDF; the final demand is a letter ready to print.
    mails = smtp.to("ap@cus-1.example")
    assert [m.subject for m in mails] == ["Payment reminder: 1 invoice(s) due soon",
                                          "Overdue notice: 1000.00 EUR past due",
                                          "Second notice: 1000.00 EUR remains unpaid"]
    name, pdf = mails[1].pdfs()[0]
    assert "N-inv-1" in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    letters = (await client.get("/v1/notices", params={"channel": "letter"})).json()["data"]
    assert [(n["step_id"], n["delivery"]) for n in letters] == [("final_demand", "print_ready")]
    printed = await client.get(f"/v1/notices/{letters[0]['notice_id']}/pdf")
    assert printed.headers["content-type"] == "application/pdf"
    assert "FINAL DEMAND" in PdfReader(io.BytesIO(printed.content)).pages[0].extract_text()
    # Running any of those days again does nothing new.
    before = len(await events(app))
    again = await run(client, "2024-03-31")
    assert again["notices"] == again["call_tasks"] == again["escalations"] == again["holds_placed"] == []
    assert len(await events(app)) == before and len(smtp.messages) == 3


async def test_catch_up_after_missed_days_sends_one_consolidated_notice(collections, smtp):
    client, app = collections
    await customer(app, client, language="fr")
    await invoice(app, "inv-1", "2024-01-31", "700.00")
    await invoice(app, "inv-2", "2024-02-10", "300.00")
    await run(client, "2024-01-20")
    result = await run(client, "2024-03-05")     # five weeks without a run
    assert [(n["channel"], n["step_id"], n["invoice_ids"]) for n in result["notices"]] == [
        ("email", "second_notice", ["inv-1", "inv-2"])]
    assert [t["invoice_ids"] for t in result["call_tasks"]] == [["inv-1"]]
    mail = smtp.to("ap@cus-1.example")
    assert len(mail) == 1 and mail[0].subject == "Deuxième relance : 1000.00 EUR impayés"
    actions = (await client.get("/v1/dunning-actions", params={"customer_id": "cus-1"})).json()["data"]
    assert sorted((a["invoice_id"], a["step_id"], a["outcome"]) for a in actions) == [
        ("inv-1", "call", "done"), ("inv-1", "first_notice", "superseded"), ("inv-1", "reminder", "superseded"),
        ("inv-1", "second_notice", "done"), ("inv-2", "first_notice", "superseded"), ("inv-2", "reminder", "superseded"),
        ("inv-2", "second_notice", "done")]
    assert (await run(client, "2024-03-06"))["notices"] == []


async def test_concurrent_runs_act_once(collections, smtp):
    client, app = collections
    await customer(app, client)
    for n in range(3):
        await invoice(app, f"inv-{n}", "2024-02-01")
    results = await asyncio.gather(*[run(client, "2024-02-25") for _ in range(4)])
    assert sum(len(r["notices"]) for r in results) == 1
    assert len(await events(app, "DunningNoticeSent")) == 1 and len(smtp.messages) == 1


async def test_compliance_guard_blocks_and_records_the_reason_once(collections, smtp):
    client, app = collections
    await customer(app, client, "dnc", do_not_contact=True)
    await customer(app, client, "noletter", consent={"letter": False})
    await customer(app, client, "tokyo", time_zone="Asia/Tokyo")
    for customer_id in ("dnc", "noletter", "tokyo"):
        await invoice(app, f"{customer_id}-1", "2024-01-31", customer_id=customer_id)
    # 10:00 UTC is 19:00 in Tokyo; at 13:00 UTC it is 22:00 there: quiet hours.
    await run(client, "2024-02-08", run_at="2024-02-08T13:00:00Z")
    await run(client, "2024-02-08", run_at="2024-02-08T13:00:00Z")
    blocked = (await client.get("/v1/blocked-actions")).json()["data"]
    assert sorted((b["customer_id"], b["step_id"], b["reason"]) for b in blocked) == [
        ("dnc", "first_notice", "do_not_contact"), ("tokyo", "first_notice", "quiet_hours")]
    # The next day at the usual time Tokyo gets its notice; the letter step is refused for consent.
    await run(client, "2024-02-09")
    assert [m.rcpt_tos for m in smtp.messages] == [["ap@noletter.example"], ["ap@tokyo.example"]]
    await run(client, "2024-03-20")
    reasons = {(b["customer_id"], b["reason"]) for b in (await client.get("/v1/blocked-actions")).json()["data"]}
    assert ("noletter", "no_consent") in reasons
    assert len(await events(app, "DunningActionBlocked")) == len(
        (await client.get("/v1/blocked-actions")).json()["data"])


async def test_frequency_cap_per_customer_type(collections, smtp):
    client, app = collections
    r = await client.put("/v1/compliance-policies/strict", json={"max_attempts": 1, "window_days": 7})
    assert r.status_code == 200
    await customer(app, client, customer_type="strict")
    await invoice(app, "inv-1", "2024-01-31")
    r = await client.post("/v1/contacts", headers=idem(), json={
        "customer_id": "cus-1", "collector_id": "col-1", "kind": "call", "outcome": "voicemail",
        "contacted_on": "2024-02-05"})
    assert r.status_code == 201
    result = await run(client, "2024-02-08")
    assert result["notices"] == [] and [b["reason"] for b in result["blocked"]] == ["frequency_cap"]
    assert (await run(client, "2024-02-12"))["notices"][0]["step_id"] == "first_notice"


async def test_disputed_invoices_are_excluded_until_resolved(collections, smtp):
    client, app = collections
    await customer(app, client)
    await invoice(app, "inv-1", "2024-01-31")
    await deliver(app, DisputeOpened(dispute_id="d-1", invoice_id="inv-1", customer_id="cus-1", currency="EUR",
                                     amount="1000.00", reason_code="pricing", opened_on="2024-02-01"))
    result = await run(client, "2024-02-08")
    assert result["notices"] == [] and [b["reason"] for b in result["blocked"]] == ["disputed"]
    await deliver(app, DisputeResolved(dispute_id="d-1", invoice_id="inv-1", customer_id="cus-1", currency="EUR",
                                       credit_amount="0.00", resolution="rejected", resolved_on="2024-02-10"))
    assert [n["step_id"] for n in (await run(client, "2024-02-11"))["notices"]] == ["first_notice"]


async def test_credit_hold_placed_then_released_when_overdue_is_cleared(collections, smtp):
    client, app = collections
    await customer(app, client)
    await invoice(app, "inv-1", "2024-01-01")
    result = await run(client, "2024-03-05")
    assert len(result["holds_placed"]) == 1
    await deliver(app, payment("inv-1", "1000.00", "2024-03-06"))
    released = await run(client, "2024-03-07")
    assert [h["hold_id"] for h in released["holds_released"]] == [h["hold_id"] for h in result["holds_placed"]]
    [hold_event] = await events(app, "CreditHoldReleased")
    assert hold_event["payload"]["reason"] == "overdue balance cleared"
    # The payment is unapplied (returned): the invoice is open again, and so is the hold rule.
    await deliver(app, PaymentUnapplied(payment_id="p", application_id="a", invoice_id="inv-1", customer_id="cus-1",
                                        amount="1000.00", currency="EUR", unapplied_on="2024-03-10",
                                        reason="payment_returned"))
    account = (await client.get("/v1/customers/cus-1", params={"as_of": "2024-03-11"})).json()
    assert account["open_invoices"][0]["open_balance"] == "1000.00"


async def test_a_broken_plan_moves_the_account_on(collections, smtp):
    client, app = collections
    await customer(app, client)
    await invoice(app, "inv-1", "2024-01-31", "900.00")
    await run(client, "2024-02-08")                        # first notice
    r = await client.post("/v1/payment-plans", headers=idem(), json={
        "plan_id": "plan-1", "customer_id": "cus-1", "invoice_ids": ["inv-1"], "currency": "EUR",
        "agreed_on": "2024-02-09", "grace_days": 2, "installments": [
            {"number": 1, "due_date": "2024-02-15", "amount": "300.00"},
            {"number": 2, "due_date": "2024-02-25", "amount": "600.00"}]})
    assert r.status_code == 201, r.text
    await deliver(app, payment("inv-1", "300.00", "2024-02-14"))
    # While the plan is active nothing is dunned, although the second notice is due on 02-21.
    results = await run_days(client, "2024-02-10", "2024-02-27")
    assert all(r["notices"] == [] for r in results)
    assert [e["payload"]["installment_number"] for e in await events(app, "InstallmentPaid")] == [1]
    broken = await run(client, "2024-02-28")
    assert [p["event"] for p in broken["plan_events"]] == ["InstallmentMissed", "PaymentPlanBroken"]
    # The account moves on: the second notice held back by the plan, and the call step (day 30)
    # at once rather than on 1 March.
    assert [n["step_id"] for n in broken["notices"]] == ["second_notice"]
    assert [t["step_id"] for t in broken["call_tasks"]] == ["call"]
    assert (await run(client, "2024-03-01"))["call_tasks"] == []
    plan = (await client.get("/v1/payment-plans/plan-1")).json()
    assert plan["status"] == "broken" and plan["installments_state"] == {"1": "paid", "2": "missed"}


async def test_plan_problems(collections):
    client, app = collections
    await customer(app, client)
    await invoice(app, "inv-1", "2024-01-31", "900.00")
    body = {"customer_id": "cus-1", "invoice_ids": ["inv-1"], "currency": "EUR", "agreed_on": "2024-02-09",
            "installments": [{"number": 1, "due_date": "2024-02-15", "amount": "1000.00"}]}
    r = await client.post("/v1/payment-plans", headers=idem(), json=body)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "installments"
    r = await client.post("/v1/payment-plans", headers=idem(), json={**body, "invoice_ids": ["nope"]})
    assert r.json()["errors"][0]["field"] == "invoice_ids.0"
    r = await client.post("/v1/payment-plans", json=body)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_write_off_approval_zeroes_the_balance(collections):
    client, app = collections
    await customer(app, client)
    await invoice(app, "inv-1", "2024-01-31", "8000.00")
    for approver, role in (("mia", "manager"), ("carl", "controller")):
        assert (await client.put(f"/v1/approvers/{approver}", json={"role": role})).status_code == 200
    r = await client.post("/v1/write-offs", headers=idem(), json={
        "write_off_id": "wo-1", "invoice_id": "inv-1", "reason": "customer insolvent", "requested_by": "mia",
        "requested_on": "2024-05-01"})
    assert r.status_code == 201 and r.json()["amount"] == "8000.00" and r.json()["status"] == "requested"
    dup = await client.post("/v1/write-offs", headers=idem(), json={
        "invoice_id": "inv-1", "reason": "again", "requested_by": "mia", "requested_on": "2024-05-01"})
    assert dup.status_code == 409
    for approver, why in (("mia", "requester"), ("nobody", "not a registered"), ("carl", None)):
        r = await client.post("/v1/write-offs/wo-1/approval", headers=idem(),
                              json={"approved_by": approver, "approved_on": "2024-05-02"})
        if why:
            assert r.status_code == 422 and why in r.json()["detail"] and r.json()["errors"][0]["field"] == "approved_by"
    assert r.status_code == 201 and r.json()["status"] == "approved"
    [approved] = await events(app, "WriteOffApproved")
    assert approved["payload"] == {"write_off_id": "wo-1", "invoice_id": "inv-1", "customer_id": "cus-1",
                                   "amount": "8000.00", "currency": "EUR", "reason": "customer insolvent",
                                   "requested_by": "mia", "approved_by": "carl", "approved_on": "2024-05-02"}
    assert (await client.get("/v1/customers/cus-1", params={"as_of": "2024-05-02"})).json()["open_invoices"] == []
    assert (await run(client, "2024-05-03"))["notices"] == []
    again = await client.post("/v1/write-offs/wo-1/rejection", headers=idem(),
                              json={"rejected_by": "carl", "reason": "late", "rejected_on": "2024-05-03"})
    assert again.status_code == 409


async def test_manager_limit_refuses_large_write_offs(collections):
    client, app = collections
    await customer(app, client)
    await invoice(app, "inv-1", "2024-01-31", "8000.00")
    await client.put("/v1/approvers/mia", json={"role": "manager"})
    await client.post("/v1/write-offs", headers=idem(), json={
        "write_off_id": "wo-1", "invoice_id": "inv-1", "reason": "x", "requested_by": "sam",
        "requested_on": "2024-05-01"})
    r = await client.post("/v1/write-offs/wo-1/approval", headers=idem(), json={"approved_by": "mia"})
    assert r.status_code == 422 and "exceeds the manager limit of 5000" in r.json()["detail"]
    r = await client.post("/v1/write-offs/wo-1/rejection", headers=idem(), json={"rejected_by": "mia", "reason": "no"})
    assert r.status_code == 201 and r.json()["status"] == "rejected"
    assert len(await events(app, "WriteOffRejected")) == 1


async def test_worklist_ranks_with_reasons_and_assignments_emit_once(collections):
    client, app = collections
    for customer_id, total in (("small", "500.00"), ("big", "9000.00")):
        await customer(app, client, customer_id)
        await invoice(app, f"{customer_id}-1", "2024-01-31", total, customer_id=customer_id)
        r = await client.put(f"/v1/customers/{customer_id}/collector", json={"collector_id": "col-1",
                                                                              "assigned_on": "2024-02-01"})
        assert r.json()["changed"] is True
    assert (await client.put("/v1/customers/big/collector", json={"collector_id": "col-1"})).json()["changed"] is False
    assert len(await events(app, "CollectorAssigned")) == 2
    await run(client, "2024-03-01")
    listed = (await client.get("/v1/worklists/col-1", params={"as_of": "2024-03-01"})).json()["data"]
    assert [e["customer_id"] for e in listed] == ["big", "small"]
    assert listed[0]["reasons"][0] == "9000.00 EUR past due (+27.0)" and listed[0]["open_call_tasks"]
    # Calling the small customer: the task closes and the contact shows in the reasons.
    await client.post("/v1/contacts", headers=idem(), json={
        "customer_id": "big", "collector_id": "col-1", "kind": "call", "outcome": "promised",
        "contacted_on": "2024-03-01", "next_follow_up_on": "2024-03-04"})
    later = (await client.get("/v1/worklists/col-1", params={"as_of": "2024-03-04"})).json()["data"]
    big = next(e for e in later if e["customer_id"] == "big")
    assert big["open_call_tasks"] == [] and "follow-up date reached (+5.0)" in big["reasons"]
    assert "last contact 3 days ago (+2.1)" in big["reasons"]
    for bad, field in (({"contacted_on": "2025-01-01"}, "contacted_on"), ({"outcome": "angry"}, "outcome"),
                       ({"next_follow_up_on": "2024-02-01"}, "next_follow_up_on")):
        r = await client.post("/v1/contacts", headers=idem(), json={
            "customer_id": "big", "kind": "call", "contacted_on": "2024-03-01", **bad})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text


async def test_the_worklist_holds_only_the_collectors_accounts_with_something_past_due(collections):
    """The worklist reads all of a collector's accounts in a few set-based queries: each account's
    own invoices, contacts, promises and tasks, never another's, and nobody else's customers."""
    client, app = collections
    book = {"a": ("col-1", "2024-02-10", "300.00"), "b": ("col-1", "2024-02-20", "300.00"),
            "future": ("col-1", "2024-04-30", "300.00"), "theirs": ("col-2", "2024-01-10", "9999.00")}
    for customer_id, (collector, due, total) in book.items():
        await customer(app, client, customer_id)
        await invoice(app, f"{customer_id}-1", due, total, customer_id=customer_id)
        await client.put(f"/v1/customers/{customer_id}/collector", json={"collector_id": collector})
    await invoice(app, "a-2", "2024-02-25", "150.25", customer_id="a")
    await client.post("/v1/contacts", headers=idem(), json={
        "customer_id": "b", "collector_id": "col-1", "kind": "call", "contacted_on": "2024-02-28",
        "next_follow_up_on": "2024-03-01"})
    await client.post("/v1/contacts", headers=idem(), json={
        "customer_id": "b", "collector_id": "col-1", "kind": "email", "contacted_on": "2024-02-29"})
    listed = (await client.get("/v1/worklists/col-1", params={"as_of": "2024-03-01"})).json()["data"]
    assert sorted(e["customer_id"] for e in listed) == ["a", "b"]
    a, b = (next(e for e in listed if e["customer_id"] == c) for c in ("a", "b"))
    assert (a["amount_past_due"], a["oldest_days_past_due"]) == ("450.25", 20)
    assert (b["amount_past_due"], b["oldest_days_past_due"]) == ("300.00", 10)
    # b's latest contact (the email, no follow-up date) is what counts: no follow-up reason.
    assert "last contact 1 days ago" in " ".join(b["reasons"]) or "last contact 1 day" in " ".join(b["reasons"])
    assert not any("follow-up" in r for r in b["reasons"])
    assert not any("contact" in r and "ago" in r for r in a["reasons"])
    assert [e["customer_id"] for e in (await client.get("/v1/worklists/col-2",
                                                        params={"as_of": "2024-03-01"})).json()["data"]] == ["theirs"]
    assert (await client.get("/v1/worklists/nobody", params={"as_of": "2024-03-01"})).json()["data"] == []


async def test_strategies_are_versioned_and_assignable(collections, smtp):
    client, app = collections
    await customer(app, client)
    await invoice(app, "inv-1", "2024-01-31")
    await invoice(app, "inv-2", "2024-01-31")
    body = {"strategy_id": "gentle", "name": "Gentle", "steps": [
        {"step_id": "nudge", "day_offset": 3, "channel": "email", "template": "first_notice"}]}
    r = await client.post("/v1/strategies", headers=idem(), json=body)
    assert r.status_code == 201 and r.json()["version"] == 1
    bad = await client.post("/v1/strategies/gentle/versions", headers=idem(), json={
        "steps": [{"step_id": "x", "day_offset": 3, "channel": "email", "template": "missing"}]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "steps.0.template"
    await client.put("/v1/customers/cus-1/strategy", json={"strategy_id": "gentle"})
    await client.put("/v1/invoices/inv-2/strategy", json={"strategy_id": None, "paused": True})
    assert [n["invoice_ids"] for n in (await run(client, "2024-02-04"))["notices"]] == [["inv-1"]]
    v2 = await client.post("/v1/strategies/gentle/versions", headers=idem(), json={"steps": [
        {"step_id": "nudge", "day_offset": 3, "channel": "email", "template": "first_notice"},
        {"step_id": "call", "day_offset": 10, "channel": "call_task"}]})
    assert v2.json()["version"] == 2
    result = await run(client, "2024-02-10")
    assert result["notices"] == [] and [t["step_id"] for t in result["call_tasks"]] == ["call"]
    listed = (await client.get("/v1/strategies")).json()["data"]
    assert {(s["strategy_id"], s["version"]) for s in listed} == {("gentle", 2), ("standard", 1)}


async def test_run_problems_and_risk(collections):
    client, app = collections
    r = await client.post("/v1/dunning-runs", headers=idem(), json={"as_of": "2025-01-01"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "as_of"
    r = await client.put("/v1/customers/c/profile", json={"time_zone": "Mars/Base"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "time_zone"
    await customer(app, client)
    await invoice(app, "inv-1", "2024-01-31")
    await deliver(app, payment("inv-1", "1000.00", "2024-03-01"))
    await invoice(app, "inv-2", "2024-03-31", "15000.00")
    risk = (await client.get("/v1/customers/cus-1/risk", params={"as_of": "2024-04-01"})).json()
    assert risk["factors"]["avg_days_late"] == "30.0 (+15.0)" and risk["factors"]["share_paid_late"] == "1.00 (+20.0)"
    assert risk["factors"]["exposure"] == "1.50 (+15.0)" and risk["risk_score"] == 50 and risk["segment"] == "medium_risk"
    result = await run(client, "2024-04-01")
    assert result["segmented"] == [{"customer_id": "cus-1", "segment": "medium_risk", "risk_score": 50}]
    assert (await run(client, "2024-04-02"))["segmented"] == []


def test_cli_daily_run_on_a_fresh_database(smtp):
    async def scenario():
        async with fresh_database("cli") as db:
            env = {**os.environ, "LEDGERLINE_COLLECTIONS_DATABASE_URL": sqlalchemy_url(db),
                   "LEDGERLINE_COLLECTIONS_SMTP_PORT": str(smtp.port)}
            done = subprocess.run([sys.executable, "-m", "services.collections", "daily-run", "--as-of", "2024-02-01"],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            out = json.loads(done.stdout)
            assert out["as_of"] == "2024-02-01" and out["notices"] == [] and out["deliveries"]["sent"] == 0
            future = subprocess.run([sys.executable, "-m", "services.collections", "daily-run", "--as-of", "2999-01-01"],
                                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
            assert future.returncode == 2 and "as_of" in future.stderr
    asyncio.run(scenario())


async def test_a_collector_escalates_by_hand(collections):
    client, app = collections
    await customer(app, client)
    await invoice(app, "inv-1", "2024-01-31", "2500.00")
    body = {"customer_id": "cus-1", "reason": "refuses to talk", "escalated_on": "2024-03-15"}
    r = await client.post("/v1/escalations", headers=idem(), json=body)
    assert r.status_code == 201, r.text
    got = r.json()
    assert (got["escalated_to"], got["overdue_amount"], got["recommended_action"]) == \
        ("ar-manager", "2500.00", "payment_plan")
    assert got["summary"].endswith("refuses to talk") and "oldest 44 days past due" in got["summary"]
    [event] = await events(app, "AccountEscalated")
    assert event["payload"]["invoice_ids"] == ["inv-1"]
    r = await client.post("/v1/escalations", headers=idem(), json={**body, "escalated_on": "2024-01-15"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "customer_id"
    r = await client.post("/v1/escalations", headers=idem(), json={**body, "recommended_action": "sue"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "recommended_action"


async def test_an_smtp_outage_leaves_emails_pending_until_delivered_once(collections, smtp):
    client, app = collections
    settings = app.state.runtime.settings
    await customer(app, client)
    await invoice(app, "inv-1", "2024-01-31")
    with smtp_server() as down:
        closed_port = down.port
    settings.smtp_port = closed_port                  # nothing listens there any more
    result = await run(client, "2024-02-08")
    [notice] = (await client.get("/v1/notices")).json()["data"]
    assert notice["notice_id"] == result["notices"][0]["notice_id"]
    assert notice["delivery"] == "pending" and notice["attempts"] == 1 and notice["last_error"]
    assert len(await events(app, "DunningNoticeSent")) == 1
    settings.smtp_port = smtp.port
    assert (await client.post("/v1/notice-deliveries")).json() == {"sent": 1, "failed": 0, "retry": 0}
    assert (await client.post("/v1/notice-deliveries")).json() == {"sent": 0, "failed": 0, "retry": 0}
    [mail] = smtp.messages
    assert mail.message_id == f"<{notice['notice_id']}@ledgerline.collections>"
    assert (await client.get(f"/v1/notices/{notice['notice_id']}")).json()["delivery"] == "sent"


async def test_an_email_that_keeps_failing_is_marked_failed(collections):
    client, app = collections
    settings = app.state.runtime.settings
    with smtp_server() as down:
        settings.smtp_port = down.port
    settings.smtp_max_attempts = 2
    await customer(app, client)
    await invoice(app, "inv-1", "2024-01-31")
    await run(client, "2024-02-08")
    assert (await client.post("/v1/notice-deliveries")).json() == {"sent": 0, "failed": 1, "retry": 0}
    assert [n["delivery"] for n in (await client.get("/v1/notices", params={"delivery": "failed"})).json()["data"]] \
        == ["failed"]


async def test_deductions_count_as_disputes_and_a_late_payment_settles_a_broken_promise(collections):
    client, app = collections
    await customer(app, client)
    await invoice(app, "inv-1", "2024-01-31")
    r = await client.post("/v1/promises", headers=idem(), json={
        "customer_id": "cus-1", "invoice_ids": ["inv-1"], "amount": "1000.00", "currency": "EUR",
        "made_on": "2024-02-10", "promise_date": "2024-02-15", "grace_days": 0})
    promise_id = r.json()["promise_id"]
    await run(client, "2024-02-20")
    risk = (await client.get("/v1/customers/cus-1/risk", params={"as_of": "2024-02-20"})).json()
    assert risk["factors"]["broken_promises"] == "1 (+5.0)"
    await deliver(app, payment("inv-1", "1000.00", "2024-02-25"))
    promise = (await client.get(f"/v1/promises/{promise_id}")).json()
    assert promise["status"] == "broken"
    async with app.state.runtime.engine.connect() as conn:
        settled = (await conn.execute(text("SELECT settled_late_on FROM promises WHERE promise_id = :p"),
                                      {"p": promise_id})).scalar_one()
    assert settled == date(2024, 2, 25)
    risk = (await client.get("/v1/customers/cus-1/risk", params={"as_of": "2024-02-26"})).json()
    assert risk["factors"]["broken_promises"] == "0 (+0.0)"
    await invoice(app, "inv-2", "2024-03-31")
    await deliver(app, DeductionOpened(dispute_id="ded-1", invoice_id="inv-2", customer_id="cus-1", payment_id="p",
                                       currency="EUR", amount="50.00", reason_code="damaged", opened_on="2024-04-02"))
    risk = (await client.get("/v1/customers/cus-1/risk", params={"as_of": "2024-04-03"})).json()
    assert risk["factors"]["disputes"] == "1 (+3.3)"
    account = (await client.get("/v1/customers/cus-1", params={"as_of": "2024-04-03"})).json()
    assert [(i["invoice_id"], i["disputed"]) for i in account["open_invoices"]] == [("inv-2", True)]


async def test_a_plan_paid_in_full_completes_and_a_paused_customer_is_not_dunned(collections):
    client, app = collections
    await customer(app, client)
    await invoice(app, "inv-1", "2024-01-31", "600.00")
    await invoice(app, "inv-2", "2024-01-31", "400.00")
    r = await client.post("/v1/payment-plans", headers=idem(), json={
        "plan_id": "plan-1", "customer_id": "cus-1", "invoice_ids": ["inv-1", "inv-2"], "currency": "EUR",
        "agreed_on": "2024-02-01", "installments": [
            {"number": 1, "due_date": "2024-02-15", "amount": "500.00"},
            {"number": 2, "due_date": "2024-03-15", "amount": "500.00"}]})
    assert r.status_code == 201 and r.json()["total_amount"] == "1000.00"
    await deliver(app, payment("inv-1", "600.00", "2024-02-14"))
    await deliver(app, payment("inv-2", "400.00", "2024-03-10"))
    first = await run(client, "2024-02-20")
    assert [(p["event"], p.get("installment_number")) for p in first["plan_events"]] == [("InstallmentPaid", 1)]
    done = await run(client, "2024-03-10")
    assert [p["event"] for p in done["plan_events"]] == ["InstallmentPaid", "PaymentPlanCompleted"]
    [completed] = await events(app, "PaymentPlanCompleted")
    assert completed["payload"]["completed_on"] == "2024-03-10"
    paid = [e["payload"] for e in await events(app, "InstallmentPaid")]
    assert [(p["installment_number"], p["paid_amount"], p["paid_on"]) for p in paid] == [
        (1, "500.00", "2024-02-14"), (2, "500.00", "2024-03-10")]
    assert (await run(client, "2024-03-20"))["plan_events"] == []
    assert (await client.get("/v1/payment-plans", params={"status": "completed"})).json()["data"][0]["plan_id"] == "plan-1"

    await invoice(app, "inv-3", "2024-03-31")
    await client.put("/v1/customers/cus-1/strategy", json={"strategy_id": None, "paused": True})
    assert (await run(client, "2024-04-10"))["notices"] == []
    await client.put("/v1/customers/cus-1/strategy", json={"strategy_id": None, "paused": False})
    assert [n["step_id"] for n in (await run(client, "2024-04-11"))["notices"]] == ["first_notice"]
    r = await client.put("/v1/customers/cus-1/strategy", json={"strategy_id": "nope"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "strategy_id"


async def test_the_ledger_constraint_alone_refuses_a_second_action(collections):
    """Without the run's lock: two transactions recording the same (customer, strategy version,
    step, invoice) at once; one inserts, the other waits for it and inserts nothing."""
    _, app = collections
    engine = app.state.runtime.engine
    row = {"customer_id": "c", "strategy_id": "standard", "strategy_version": 1, "step_id": "first_notice",
           "invoice_id": "i", "channel": "email", "outcome": "done", "reference_id": "n", "acted_on": date(2024, 2, 8)}
    first_inserted = asyncio.Event()

    async def record(wait: bool):
        async with engine.begin() as conn:
            got = await accounts.record_actions(conn, [row])
            if wait:
                first_inserted.set()
                await asyncio.sleep(0.3)
            return got

    async def second():
        await first_inserted.wait()
        return await record(False)

    results = await asyncio.gather(record(True), second())
    assert results == [{("i", "first_notice")}, set()]
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM dunning_actions"))).scalar_one() == 1


async def test_with_api_keys_nobody_acts_in_someone_elses_name(smtp):
    import json as _json

    from shared.auth import key_hash

    keys = _json.dumps({key_hash("mia-key"): {"actor": "mia", "scopes": ["collections:*"]},
                        key_hash("carl-key"): {"actor": "carl", "scopes": ["collections:*"]},
                        key_hash("admin-key"): {"actor": "it-admin", "scopes": ["collections:*", "collections:admin"]}})

    def make(url):
        return definition(CollectionsSettings(database_url=url, role="api", smtp_port=smtp.port, api_keys=keys),
                          clock=FixedClock(TODAY))

    async with service_client(make) as (client, app):
        mia, carl, admin = ({"Authorization": f"Bearer {k}"} for k in ("mia-key", "carl-key", "admin-key"))
        await deliver(app, CustomerRegistered(customer_id="cus-1", name="cus-1 SARL", currency="EUR",
                                              payment_terms_days=30, credit_limit="10000.00",
                                              registered_on="2023-01-01"))
        await invoice(app, "inv-1", "2024-01-31", "800.00")
        # Granting approval rights takes the admin scope, not just write access.
        denied = await client.put("/v1/approvers/mia", json={"role": "cfo"}, headers=mia)
        assert denied.status_code == 403 and denied.json()["required_scope"] == "collections:admin"
        for who in ("mia", "carl"):
            r = await client.put(f"/v1/approvers/{who}", json={"role": "manager"}, headers=admin)
            assert r.status_code == 200, r.text
        body = {"write_off_id": "wo-1", "invoice_id": "inv-1", "reason": "insolvent", "requested_on": "2024-05-01"}
        forged = await client.post("/v1/write-offs", headers={**idem(), **mia}, json={**body, "requested_by": "sam"})
        assert forged.status_code == 403 and forged.json()["errors"][0]["field"] == "requested_by"
        r = await client.post("/v1/write-offs", headers={**idem(), **mia}, json={**body, "requested_by": "mia"})
        assert r.status_code == 201, r.text
        # Mia cannot approve her own request by naming Carl as the approver.
        as_carl = await client.post("/v1/write-offs/wo-1/approval", headers={**idem(), **mia},
                                    json={"approved_by": "carl", "approved_on": "2024-05-02"})
        assert as_carl.status_code == 403 and as_carl.json()["errors"][0]["field"] == "approved_by"
        assert (await client.get("/v1/write-offs/wo-1", headers=mia)).json()["status"] == "requested"
        ok = await client.post("/v1/write-offs/wo-1/approval", headers={**idem(), **carl},
                               json={"approved_by": "carl", "approved_on": "2024-05-02"})
        assert ok.status_code == 201 and ok.json()["status"] == "approved"
