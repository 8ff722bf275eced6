"""The full reporting suite on a real PostgreSQL database, fed contract events through the
consumer handler in a shuffled order. Every expected figure is worked out by hand in the
comments from the book (reporting_book.rich_book)."""
from __future__ import annotations

import asyncio
import io
import json
import random
import uuid
from datetime import date, timedelta
from decimal import Decimal

from aiokafka.admin import AIOKafkaAdminClient
from openpyxl import load_workbook
from sqlalchemy import text

from reporting_book import applied, book, feed, get, invoice, received, reporting, rich_book  # noqa: F401
from shared.consumer import ConsumerRunner
from shared.contracts import (
    CollectorAssigned,
    CreditMemoIssued,
    PaymentUnapplied,
    SmallBalanceWriteOffReversed,
    SmallBalanceWrittenOff,
    WriteOffApproved,
)
from shared.db import apply_migrations, make_engine
from shared.relay import make_producer
from shared.service import Runtime
from services.reporting.adapters.repository import FACT_TABLES, ledger_totals, rebuild_deltas, snapshot_ledger_totals
from services.reporting.application.rebuild import rebuild_from_topics
from services.reporting.domain import ledger, metrics
from services.reporting.domain.facts import InvoiceFact
from services.reporting.domain.forecast import forecast as forecast_rule
from services.reporting.main import definition
from services.reporting.projections.facts import project
from services.reporting.settings import ReportingSettings
from tests.support.infra import KAFKA, fresh_database, sqlalchemy_url
from tests.support.kafka import create_topic

MARCH = {"from": "2024-03-01", "to": "2024-03-31"}


async def _load(app, seed: int = 7) -> None:
    events = [received(e) for e in rich_book()]
    random.Random(seed).shuffle(events)
    await feed(app.state.runtime.engine, events)


def buckets(**amounts):
    return {k.replace("_", "-").replace("d", "") if k != "current" else k: v for k, v in amounts.items()}


async def test_aging_with_every_movement_groups_bases_buckets_and_fx(reporting):
    client, app = reporting
    await _load(app)
    # Mar 31, USD: A 1000 - 600 + 600 - 400 = 600, 51 days past due; B 500 - 100 - 399.50 - 0.50
    # = 0; C written off; D 300 current.
    usd = await get(client, "/v1/reports/aging", as_of="2024-03-31", currency="USD")
    assert usd["buckets"] == {"current": "300.00", "1-30": "0.00", "31-60": "600.00", "61-90": "0.00",
                              "90+": "0.00"}
    assert usd["tie_out"] == {"invoiced": "3800.00", "credited": "100.00", "applied": "799.50", "adjusted": "0.50",
                              "written_off": "2000.00", "net": "900.00", "ties_out": True}
    # Between the return (Mar 5) and the next payment, A owes its full 1000 again.
    mar6 = await get(client, "/v1/reports/aging", as_of="2024-03-06", currency="USD", customer_id="C1")
    assert [(i["invoice_id"], i["applied"], i["open_balance"]) for i in mar6["invoices"]] == [
        ("A", "0.00", "1000.00"), ("B", "0.00", "500.00")]

    # Collectors as of the date: C1 moved from alice to bob on Mar 15.
    # Per customer (C1's A, C2's D), summed in SQL, equal to the hand figures and to the domain
    # ageing the drill-down's invoices; one customer per page, the cursor leads to the next.
    assert [(c["customer_id"], c["buckets"], c["invoice_count"]) for c in usd["customers"]] == [
        ("C1", {"current": "0.00", "1-30": "0.00", "31-60": "600.00", "61-90": "0.00", "90+": "0.00"}, 1),
        ("C2", {"current": "300.00", "1-30": "0.00", "31-60": "0.00", "61-90": "0.00", "90+": "0.00"}, 1)]
    first = await get(client, "/v1/reports/aging", as_of="2024-03-31", currency="USD", limit=1)
    second = await get(client, "/v1/reports/aging", as_of="2024-03-31", currency="USD", limit=1,
                       cursor=first["next_cursor"])
    assert [c["customer_id"] for c in first["customers"] + second["customers"]] == ["C1", "C2"]
    assert second["next_cursor"] is None and first["buckets"] == second["buckets"] == usd["buckets"]
    assert first["tie_out"] == second["tie_out"] == usd["tie_out"]
    for day in ("2024-01-31", "2024-03-06", "2024-03-31"):
        for params in ({}, {"basis": "invoice_date"}, {"buckets": "15,45"}):
            full = await get(client, "/v1/reports/aging", as_of=day, currency="USD", **params)
            for row in full["customers"]:
                one = await get(client, "/v1/reports/aging", as_of=day, currency="USD", customer_id=row["customer_id"],
                                **params)
                assert (one["buckets"], one["total"], len(one["invoices"])) == (
                    row["buckets"], row["total"], row["invoice_count"]), (day, params)
    for bad in ({"cursor": "not-a-cursor"}, {"limit": "0"}, {"limit": "1001"}):
        r = await client.get("/v1/reports/aging", params={"as_of": "2024-03-31", "currency": "USD", **bad})
        assert r.status_code in (400, 422) and r.json()["errors"][0]["field"] == next(iter(bad)), r.text
    by_collector = await get(client, "/v1/reports/aging", as_of="2024-03-31", currency="USD", group_by="collector")
    assert [(g["key"], g["total"], g["invoice_count"]) for g in by_collector["groups"]] == [
        ("alice", "300.00", 1), ("bob", "600.00", 1)]
    mar10 = await get(client, "/v1/reports/aging", as_of="2024-03-10", currency="USD", group_by="collector")
    assert [(g["key"], g["total"]) for g in mar10["groups"]] == [("alice", "3400.00")]
    by_segment = await get(client, "/v1/reports/aging", as_of="2024-03-31", currency="USD", group_by="segment")
    assert [(g["key"], g["total"]) for g in by_segment["groups"]] == [("(none)", "300.00"), ("enterprise", "600.00")]

    # By invoice date: A issued Jan 10 is 81 days old, D 11 days.
    by_issue = await get(client, "/v1/reports/aging", as_of="2024-03-31", currency="USD", basis="invoice_date")
    assert by_issue["bucket_labels"] == ["0-30", "31-60", "61-90", "90+"]
    assert by_issue["buckets"] == {"0-30": "300.00", "31-60": "0.00", "61-90": "600.00", "90+": "0.00"}
    custom = await get(client, "/v1/reports/aging", as_of="2024-03-31", currency="USD", buckets="15,45")
    assert custom["buckets"] == {"current": "300.00", "1-15": "0.00", "16-45": "0.00", "45+": "600.00"}
    # The snapshot-based summary gives the same buckets, on any date and basis.
    for day in ("2024-01-31", "2024-02-20", "2024-03-05", "2024-03-06", "2024-03-31", "2024-06-30"):
        for params in ({}, {"basis": "invoice_date"}, {"buckets": "15,45"}):
            full = await get(client, "/v1/reports/aging", as_of=day, currency="USD", **params)
            summary = await get(client, "/v1/reports/aging/summary", as_of=day, currency="USD", **params)
            assert (summary["buckets"], summary["total"]) == (full["buckets"], full["total"]), (day, params)
    top = await get(client, "/v1/reports/aging/top-overdue", as_of="2024-03-31", currency="USD")
    assert top["customers"] == [{"customer_id": "C1", "customer_name": None, "past_due": "600.00",
                                 "over_90": "0.00", "total": "600.00", "open_invoices": 1}]  # C2's D is current
    top = await get(client, "/v1/reports/aging/top-overdue", as_of="2024-06-30", currency="USD", limit=1)
    assert [(c["customer_id"], c["past_due"], c["over_90"]) for c in top["customers"]] == [("C1", "600.00", "600.00")]
    bad = await client.get("/v1/reports/aging", params={"currency": "USD", "buckets": "60,30"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "buckets"

    # FX: a EUR->USD rate posted for Mar 1 (1.10) and Apr 1 (1.20); the latest on or before
    # the as-of date applies. E (1000 EUR, due Mar 31) is current on Mar 31.
    for day, rate in (("2024-03-01", "1.10"), ("2024-04-01", "1.20")):
        r = await client.post("/v1/fx-rates", json={"currency": "EUR", "reporting_currency": "USD",
                                                   "rate_date": day, "rate": rate},
                              headers={"Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code == 201, r.text
    consolidated = await get(client, "/v1/reports/aging", as_of="2024-03-31", reporting_currency="USD",
                             group_by="currency")
    assert consolidated["currency"] == "USD" and consolidated["tie_out"] is None
    assert consolidated["buckets"]["current"] == "1400.00" and consolidated["total"] == "2000.00"
    assert [(c["currency"], c["total"], c["rate"], c["rate_date"], c["converted_total"])
            for c in consolidated["by_currency"]] == [("EUR", "1000.00", "1.1", "2024-03-01", "1100.00"),
                                                     ("USD", "900.00", "1", None, "900.00")]
    assert [(g["key"], g["total"]) for g in consolidated["groups"]] == [("EUR", "1100.00"), ("USD", "900.00")]
    # The converted report (aged invoice by invoice) pages its customers the same way.
    cursor, seen = None, []
    while True:
        part = await get(client, "/v1/reports/aging", as_of="2024-03-31", reporting_currency="USD", group_by="currency",
                         limit=1, **({"cursor": cursor} if cursor else {}))
        assert (part["buckets"], part["groups"], part["by_currency"]) == (
            consolidated["buckets"], consolidated["groups"], consolidated["by_currency"])
        seen += part["customers"]
        cursor = part["next_cursor"]
        if cursor is None:
            break
    assert seen == consolidated["customers"] and len(seen) >= 2
    april = await get(client, "/v1/reports/aging", as_of="2024-04-01", reporting_currency="USD", currency="EUR")
    assert april["total"] == "1200.00"
    missing = await client.get("/v1/reports/aging", params={"as_of": "2024-03-31", "reporting_currency": "GBP"})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "reporting_currency"
    for body, field in (({"currency": "EUR", "reporting_currency": "USD", "rate_date": "2024-03-01", "rate": "0"},
                         "rate"),
                        ({"currency": "USD", "reporting_currency": "USD", "rate_date": "2024-03-01", "rate": "1"},
                         "reporting_currency")):
        r = await client.post("/v1/fx-rates", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
    assert (await client.post("/v1/fx-rates", json={"currency": "EUR", "reporting_currency": "USD",
                                                    "rate_date": "2024-03-01", "rate": "1"})).status_code == 400


async def test_kpis_dso_countback_bpdso_add_cei_and_days_late(reporting):
    client, app = reporting
    await _load(app)
    # March: beginning (Feb 29) A 400 + B 500 + C 2000 = 2900; sales D 300; ending 900 of which
    # current (due on or after Mar 31) D 300. DSO 900/300 x 31 = 93; BPDSO 300/300 x 31 = 31;
    # ADD 600/300 x 31 = 62; CEI (2900 + 300 - 900) / (2900 + 300 - 300) = 79.3103 -> 79.31.
    # Countback: March's 300 of sales leave 600 (31 days), February's 2500 take 600/2500 x 29
    # = 6.96 days: 37.96. Days late: A 400 on Mar 25 (45 days), B 399.50 on Mar 12 (10 days):
    # (18000 + 3995) / 799.50 = 27.5109 -> 27.51; by count 27.50.
    k = await get(client, "/v1/reports/kpis", period="2024-03", currency="USD")
    assert {key: k[key] for key in ("from", "to", "days", "beginning_ar", "ending_ar", "ending_current_ar",
                                    "ending_past_due_ar", "credit_sales", "dso", "countback_dso",
                                    "best_possible_dso", "average_days_delinquent", "cei", "payments",
                                    "paid_amount", "average_days_late", "average_days_late_by_count")} == {
        "from": "2024-03-01", "to": "2024-03-31", "days": 31, "beginning_ar": "2900.00", "ending_ar": "900.00",
        "ending_current_ar": "300.00", "ending_past_due_ar": "600.00", "credit_sales": "300.00", "dso": "93.00",
        "countback_dso": "37.96", "best_possible_dso": "31.00", "average_days_delinquent": "62.00", "cei": "79.31",
        "payments": 2, "paid_amount": "799.50", "average_days_late": "27.51", "average_days_late_by_count": "27.50"}
    assert k == await get(client, "/v1/reports/kpis", currency="USD", **MARCH)
    # February: PA1 (11 days late) was reversed only on Mar 5, so it counts in February.
    feb = await get(client, "/v1/reports/kpis", period="2024-02", currency="USD")
    assert (feb["average_days_late"], feb["payments"]) == ("11.00", 1)
    trend = await get(client, "/v1/reports/kpis/trend", currency="USD", **{"from": "2024-01-15", "to": "2024-03-31"})
    assert [(p["from"], p["to"]) for p in trend["periods"]] == [
        ("2024-01-15", "2024-01-31"), ("2024-02-01", "2024-02-29"), ("2024-03-01", "2024-03-31")]
    assert trend["periods"][2] == k
    quarter = await get(client, "/v1/reports/kpis", period="2024-Q1", currency="USD")
    assert (quarter["from"], quarter["to"], quarter["days"], quarter["credit_sales"]) == (
        "2024-01-01", "2024-03-31", 91, "3800.00")
    for params, field in (({"period": "2024-13"}, "period"), ({"period": "2024-03", "from": "2024-03-01"}, "period"),
                          ({"from": "2024-03-01"}, "to")):
        r = await client.get("/v1/reports/kpis", params={"currency": "USD", **params})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text


async def test_roll_forward_close_prior_period_adjustments_and_gl_reconciliation(reporting):
    client, app = reporting
    await _load(app)
    # March: 2900 + 300 - (-600 + 400 + 399.50) - 100 - 2000 - 0.50 = 900.
    march = await get(client, "/v1/reports/roll-forward", period="2024-03", currency="USD")
    assert {k: march[k] for k in ("opening", "invoiced", "cash_applied", "credits", "write_offs", "adjustments",
                                  "prior_period_adjustments", "closing", "ties", "closed")} == {
        "opening": "2900.00", "invoiced": "300.00", "cash_applied": "199.50", "credits": "100.00",
        "write_offs": "2000.00", "adjustments": "-0.50", "prior_period_adjustments": "0.00", "closing": "900.00",
        "ties": True, "closed": False}

    # Close February (opening A 1000, invoiced B + C 2500, cash 600, closing 2900) ...
    close = await client.post("/v1/period-closes", json={"currency": "USD", "from": "2024-02-01", "to": "2024-02-29"},
                              headers={"Idempotency-Key": "close-feb"})
    assert close.status_code == 201, close.text
    assert (close.json()["opening"], close.json()["closing"], close.json()["closed"]) == ("1000.00", "2900.00", True)
    again = await client.post("/v1/period-closes", json={"currency": "USD", "from": "2024-02-15", "to": "2024-03-10"},
                              headers={"Idempotency-Key": "close-overlap"})
    assert again.status_code == 409
    # ... then a credit memo dated Feb 25 arrives late. February stays as reported; March
    # opens at the reported 2900 and books the -50 as a prior-period adjustment.
    await feed(app.state.runtime.engine, [received(CreditMemoIssued(
        credit_memo_id="CM-LATE", invoice_id="A", customer_id="C1", currency="USD", amount="50.00",
        issue_date="2024-02-25", reason="late"))])
    feb = await get(client, "/v1/reports/roll-forward", period="2024-02", currency="USD")
    assert (feb["closing"], feb["credits"], feb["closed"]) == ("2900.00", "0.00", True)
    march = await get(client, "/v1/reports/roll-forward", period="2024-03", currency="USD")
    assert (march["opening"], march["prior_period_adjustments"], march["adjustments"], march["closing"],
            march["ties"]) == ("2900.00", "-50.00", "-50.50", "850.00", True)

    # GL posted opening 2900, invoiced 300 and a closing of 900 (it missed the late credit).
    posted = await client.post("/v1/gl-control-totals", headers={"Idempotency-Key": "gl-mar"}, json={
        "currency": "USD", "from": "2024-03-01", "to": "2024-03-31", "opening": "2900.00", "invoiced": "300.00",
        "closing": "900.00"})
    assert posted.status_code == 201, posted.text
    rec = await get(client, "/v1/reports/reconciliation", period="2024-03", currency="USD")
    assert rec["gl_posted"] is True and rec["reconciled"] is False
    assert rec["variances"] == [{"line": "closing", "subledger": "850.00", "general_ledger": "900.00",
                                 "variance": "-50.00"}]
    assert [line["variance"] for line in rec["lines"]] == ["0.00", "0.00", None, None, None, None, "-50.00"]
    bad = await client.post("/v1/gl-control-totals", headers={"Idempotency-Key": "gl-bad"}, json={
        "currency": "USD", "from": "2024-03-01", "to": "2024-03-31", "closing": "900.001"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "closing"


async def test_forecast_allowance_disputes_collectors_and_recovery_cohorts(reporting):
    client, app = reporting
    await _load(app)
    # As of Mar 31 (the clock's today): A is under plan PL1 (300 on Apr 5 -> week 1, 300 on
    # May 5 -> week 5); C2 has no payment history, so D (300, due Apr 19) lands in week 3
    # (Apr 14-20 is days 15-21); promise PR2 100 on Apr 10 in week 2.
    f = await get(client, "/v1/reports/forecast", currency="USD")
    weeks = {w["week"]: (w["invoices"], w["promises"], w["plans"], w["forecast"]) for w in f["weeks"]}
    assert weeks[1] == ("0.00", "0.00", "300.00", "300.00")
    assert weeks[2] == ("0.00", "100.00", "0.00", "100.00")
    assert weeks[3] == ("300.00", "0.00", "0.00", "300.00")
    assert weeks[5] == ("0.00", "0.00", "300.00", "300.00")
    assert f["total"] == "1000.00" and f["beyond"] == "0.00" and f["weeks"][0]["actual"] is None
    # As of Mar 10: A 1000, B 400, C 2000, all due by Mar 16 -> week 1 (Mar 11-17); the weeks
    # that ended before today carry the actual cash: B's 399.50 on Mar 12.
    past = await get(client, "/v1/reports/forecast", as_of="2024-03-10", currency="USD")
    assert (past["weeks"][0]["forecast"], past["weeks"][0]["actual"], past["weeks"][0]["variance"]) == (
        "3400.00", "399.50", "-3000.50")
    assert past["weeks"][1]["actual"] == "0.00" and past["weeks"][2]["actual"] is None
    # Customer's own delay: as of Mar 31 C1 paid 27.51 days late on average -> 28 days.
    late = await get(client, "/v1/reports/forecast", as_of="2024-03-29", currency="USD")
    assert late["weeks"][0]["invoices"] == "600.00"  # A due Feb 9 + 28 days is overdue: week 1

    allowance = await get(client, "/v1/reports/allowance", as_of="2024-03-31", currency="USD")
    assert [(x["bucket"], x["balance"], x["percent"], x["allowance"]) for x in allowance["lines"]] == [
        ("current", "300.00", "1", "3.00"), ("1-30", "0.00", "5", "0.00"), ("31-60", "600.00", "10", "60.00"),
        ("61-90", "0.00", "25", "0.00"), ("90+", "0.00", "50", "0.00")]
    assert allowance["allowance"] == "63.00"
    custom = await get(client, "/v1/reports/allowance", as_of="2024-03-31", currency="USD", percentages="2.5,0,7,0,0")
    assert custom["allowance"] == "49.50"  # 7.50 + 42.00
    r = await client.get("/v1/reports/allowance", params={"currency": "USD", "percentages": "1,2"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "percentages"

    disputes = await get(client, "/v1/reports/disputes", currency="USD", **MARCH)
    assert [(x["kind"], x["reason_code"], x["opened"], x["resolved"], x["credited"], x["average_cycle_days"],
             x["open"], x["open_amount"], x["average_open_age_days"]) for x in disputes["reasons"]] == [
        ("deduction", "freight", 1, 0, "0.00", None, 1, "50.00", "11.00"),
        ("dispute", "pricing", 1, 1, "100.00", "9.00", 0, "0.00", None)]

    collectors = await get(client, "/v1/reports/collectors", currency="USD", **MARCH)
    assert [(c["collector_id"], c["customers"], c["open_balance"], c["past_due"], c["collected"],
             c["collected_past_due"], c["promises_made"], c["notices_sent"], c["call_tasks"])
            for c in collectors["collectors"]] == [
        ("alice", 1, "300.00", "0.00", "0.00", "0.00", 1, 1, 0),
        ("bob", 1, "600.00", "600.00", "199.50", "199.50", 0, 0, 1)]

    # Past due in February: A from Feb 10 owing 1000; within 60 days +600 - 600 + 400 = 400.
    cohort = await get(client, "/v1/reports/recovery-cohorts", cohort="past_due", period="2024-02", window_days=60,
                       currency="USD")
    assert (cohort["invoices"], cohort["balance"], cohort["collected"], cohort["recovery_rate"]) == (
        1, "1000.00", "400.00", "0.4000")
    escalated = await get(client, "/v1/reports/recovery-cohorts", cohort="escalated", period="2024-03",
                          currency="USD")
    assert (escalated["balance"], escalated["collected"], escalated["recovery_rate"]) == ("1000.00", "400.00", "0.4000")
    written = await get(client, "/v1/reports/recovery-cohorts", cohort="written_off", period="2024-03",
                        currency="USD")
    assert (written["balance"], written["collected"], written["recovery_rate"]) == ("2000.00", "0.00", "0.0000")


async def test_every_report_exports_csv_and_xlsx(reporting):
    client, app = reporting
    await _load(app)
    csv_aging = await client.get("/v1/reports/aging", params={"as_of": "2024-03-31", "currency": "USD",
                                                              "format": "csv"})
    assert csv_aging.status_code == 200 and csv_aging.headers["content-type"].startswith("text/csv")
    lines = csv_aging.text.splitlines()
    assert lines[0] == "customer_id,customer_name,buckets.current,buckets.1-30,buckets.31-60,buckets.61-90," \
                       "buckets.90+,total,invoice_count"
    assert lines[1:] == ["C1,,0.00,0.00,600.00,0.00,0.00,600.00,1", "C2,,300.00,0.00,0.00,0.00,0.00,300.00,1"]
    by_accept = await client.get("/v1/reports/kpis", params={"period": "2024-03", "currency": "USD"},
                                 headers={"Accept": "text/csv"})
    assert "dso,93.00" in by_accept.text.splitlines()

    xlsx = await client.get("/v1/reports/aging", params={"as_of": "2024-03-31", "currency": "USD",
                                                         "customer_id": "C1", "format": "xlsx"})
    assert xlsx.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    book = load_workbook(io.BytesIO(xlsx.content))
    assert book.sheetnames[:3] == ["summary", "customers", "invoices"]
    summary = {row[0]: row[1] for row in book["summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["total"] == 600 and summary["currency"] == "USD"
    invoices = list(book["invoices"].iter_rows(values_only=True))
    assert invoices[1][0] == "A" and invoices[1][invoices[0].index("open_balance")] == 600

    for path, params in (("/v1/reports/dso", MARCH), ("/v1/reports/recovery-rate", MARCH),
                         ("/v1/reports/promises", MARCH), ("/v1/reports/summary", {"as_of": "2024-03-31"}),
                         ("/v1/reports/kpis/trend", MARCH), ("/v1/reports/roll-forward", MARCH),
                         ("/v1/reports/reconciliation", MARCH), ("/v1/reports/forecast", {}),
                         ("/v1/reports/allowance", {}), ("/v1/reports/disputes", MARCH),
                         ("/v1/reports/collectors", MARCH),
                         ("/v1/reports/recovery-cohorts", {"cohort": "past_due", **MARCH})):
        for fmt in ("csv", "xlsx"):
            r = await client.get(path, params={**params, "currency": "USD", "format": fmt})
            assert r.status_code == 200, (path, fmt, r.text)
            assert "attachment" in r.headers["content-disposition"]
    r = await client.get("/v1/reports/summary", params={"currency": "USD", "format": "pdf"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "format"


async def _facts(engine) -> dict[str, list]:
    async with engine.connect() as conn:
        return {t: [tuple(r) for r in await conn.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2, 3"))]
                for t in FACT_TABLES}


async def _reports(client) -> list:
    return [await get(client, path, currency="USD", **params) for path, params in (
        ("/v1/reports/aging", {"as_of": "2024-03-31", "group_by": "collector"}),
        ("/v1/reports/kpis/trend", {"from": "2024-01-01", "to": "2024-04-30"}),
        ("/v1/reports/roll-forward", MARCH), ("/v1/reports/forecast", {}),
        ("/v1/reports/disputes", MARCH), ("/v1/reports/collectors", MARCH),
        ("/v1/reports/recovery-cohorts", {"cohort": "past_due", "period": "2024-02"}))]


async def test_batch_rebuild_from_the_topics_equals_the_incremental_read_model(reporting):
    """Both books on a private 3-partition topic: the consumer runner builds the read model
    event by event; the set-based rebuild (COPY + INSERT ... SELECT) from the same topic gives
    the same rows in every fact table and the same reports, and leaves the consumer's
    positions at the end, so the runner carries on with only what comes next."""
    client, app = reporting
    engine = app.state.runtime.engine
    topic, group = await create_topic("rebuild"), f"reporting-rebuild-{uuid.uuid4().hex[:8]}"
    producer = make_producer(KAFKA, "reporting-rebuild-test")
    await producer.start()

    async def publish(events) -> None:
        for event in events:
            await producer.send_and_wait(topic, json.dumps(event.data).encode(), key=uuid.uuid4().bytes, headers=[
                ("ce_id", event.event_id.encode()), ("ce_type", event.event_type.encode()),
                ("ce_schemaversion", str(event.schema_version).encode())])

    async def consume_until(count: int) -> ConsumerRunner:
        runner = ConsumerRunner(engine, KAFKA, group, [topic], project)
        task = asyncio.create_task(runner.run())
        deadline = asyncio.get_running_loop().time() + 30
        while runner.handled < count:
            assert asyncio.get_running_loop().time() < deadline, f"handled {runner.handled} of {count}"
            await asyncio.sleep(0.05)
        runner.stop()
        await asyncio.wait_for(task, 20)
        return runner

    try:
        events = [received(e) for e in rich_book() + book()]
        await publish(events + events[:3])  # three republished: the keys absorb them
        await consume_until(len(events))
        incremental_facts, incremental_reports = await _facts(engine), await _reports(client)
        assert len(incremental_facts["invoices"]) == 10

        said: list[str] = []
        assert await rebuild_from_topics(engine, KAFKA, group, [topic], force=True, say=said.append,
                                         progress=False) == 0
        assert f"{len(events) + 3} events" in said[-1]
        assert await _facts(engine) == incremental_facts
        assert await _reports(client) == incremental_reports

        before = (await get(client, "/v1/reports/aging", as_of="2024-03-31", currency="USD"))["total"]
        late = received(CreditMemoIssued(credit_memo_id="CM-NEXT", invoice_id="A", customer_id="C1", currency="USD",
                                         amount="10.00", issue_date="2024-03-30", reason="next"))
        await publish([late])
        runner = await consume_until(1)
        assert runner.handled == 1  # only the new event: the rebuild stored the end offsets
        after = (await get(client, "/v1/reports/aging", as_of="2024-03-31", currency="USD"))["total"]
        assert Decimal(before) - Decimal(after) == Decimal("10.00")
    finally:
        await producer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        await admin.delete_topics([topic])
        await admin.close()


def _random_movements_book(rng: random.Random):
    """Invoices and every kind of movement as events, and as the domain sees them."""
    day0 = date(2024, 1, 1)
    events, invoices, movements = [], [], []
    for n in range(30):
        issue = day0 + timedelta(days=rng.randrange(0, 150))
        due = issue + timedelta(days=rng.choice([0, 15, 30, 60]))
        amount = Decimal(rng.randrange(1000, 500_000)).scaleb(-2)
        customer = f"C{rng.randrange(5)}"
        invoices.append(InvoiceFact(f"R{n}", customer, "USD", amount, issue, due, f"N-R{n}"))
        events.append(invoice(f"R{n}", customer, str(amount), issue, due))
    for n in range(60):
        target = rng.choice(invoices)
        on = target.issue_date + timedelta(days=rng.randrange(-10, 120))  # some before the issue date
        amount = Decimal(rng.randrange(1, 100_000)).scaleb(-2)
        kind = rng.choice(["credit", "cash", "unapplied", "adjustment", "adjustment_reversal", "write_off"])
        if kind == "credit":
            events.append(CreditMemoIssued(credit_memo_id=f"RC{n}", invoice_id=target.invoice_id, customer_id="x",
                                           currency="USD", amount=str(amount), issue_date=on, reason="r"))
        elif kind == "cash":
            events.append(applied(f"RP{n}", target.invoice_id, "x", str(amount), on))
        elif kind == "unapplied":
            events.append(PaymentUnapplied(payment_id=f"RU{n}", application_id=f"RU{n}", invoice_id=target.invoice_id,
                                           customer_id="x", amount=str(amount), currency="USD", unapplied_on=on,
                                           reason="manual_reversal"))
        elif kind == "adjustment":
            events.append(SmallBalanceWrittenOff(adjustment_id=f"RA{n}", payment_id="p", invoice_id=target.invoice_id,
                                                 customer_id="x", amount=str(amount), currency="USD", value_date=on))
        elif kind == "adjustment_reversal":
            events.append(SmallBalanceWriteOffReversed(adjustment_id=f"RR{n}", payment_id="p",
                                                       invoice_id=target.invoice_id, customer_id="x",
                                                       amount=str(amount), currency="USD", reversed_on=on,
                                                       reason="manual_reversal"))
        else:
            events.append(WriteOffApproved(write_off_id=f"RW{n}", invoice_id=target.invoice_id, customer_id="x",
                                           amount=str(amount), currency="USD", reason="r", requested_by="a",
                                           approved_by="b", approved_on=on))
        kind, sign = {"unapplied": ("cash", -1), "adjustment_reversal": ("adjustment", -1)}.get(kind, (kind, 1))
        movements.append(ledger.Movement(target.invoice_id, kind, sign * amount, on))
    collectors = {f"C{n}": rng.choice(["alice", "bob", None]) for n in range(5)}
    events += [CollectorAssigned(customer_id=c, collector_id=who, assigned_on=date(2024, 1, 1))
               for c, who in collectors.items() if who is not None]
    rng.shuffle(events)
    return events, invoices, movements, collectors


def _money(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("0.01")))


def _customers_of(rows: list[metrics.CustomerAging]) -> list[tuple]:
    return [(c.customer_id, {k: _money(v) for k, v in c.buckets.items()}, _money(c.total), c.invoice_count)
            for c in rows]


async def _every_customer(client, params: dict, limit: int) -> list[tuple]:
    """Every customer row of the full aging, following next_cursor page by page; the CSV
    export (one file, every customer) must hold the same rows."""
    rows, cursor, pages, cursors = [], None, 0, []
    while True:
        body = await get(client, "/v1/reports/aging", limit=limit, **params, **({"cursor": cursor} if cursor else {}))
        assert len(body["customers"]) <= limit
        rows += [(c["customer_id"], c["buckets"], c["total"], c["invoice_count"]) for c in body["customers"]]
        cursor, pages = body["next_cursor"], pages + 1
        cursors.append(cursor)
        if cursor is None:
            break
    # The export ignores cursor and limit.
    exported = await client.get("/v1/reports/aging", params={**params, "format": "csv", "limit": 1,
                                                             **({"cursor": cursors[0]} if cursors[0] else {})})
    lines = exported.text.splitlines()
    assert len(lines) == len(rows) + 1 and [line.split(",")[0] for line in lines[1:]] == [r[0] for r in rows]
    assert [line.split(",")[-2] for line in lines[1:]] == [r[2] for r in rows]
    assert pages == max(1, -(-len(rows) // limit))
    return rows


async def test_sql_equals_the_domain_rules_with_every_movement_kind_on_a_random_book(reporting):
    client, app = reporting
    events, invoices, movements, collectors = _random_movements_book(random.Random(20241231))
    await feed(app.state.runtime.engine, [received(e) for e in events])
    for as_of in (date(2024, 1, 20), date(2024, 3, 31), date(2024, 5, 15), date(2024, 8, 31)):
        expected = metrics.aging(ledger.open_items(invoices, movements, as_of), as_of)
        want = {k: str(v.quantize(Decimal("0.01"))) for k, v in expected.buckets.items()}
        got = await get(client, "/v1/reports/aging", as_of=as_of.isoformat(), currency="USD")
        assert got["buckets"] == want and got["tie_out"]["ties_out"] is True, as_of
        summary = await get(client, "/v1/reports/aging/summary", as_of=as_of.isoformat(), currency="USD")
        assert summary["buckets"] == want, as_of
        # The book's aging summed per customer in SQL equals the domain's invoice-by-invoice
        # aging: every customer, bucket and group, on each basis and set of edges, page by page.
        for spec in (metrics.DEFAULT_BUCKETS, metrics.BucketSpec((15, 45)), metrics.BucketSpec((30, 60, 90), "invoice_date"),
                     metrics.BucketSpec((1, 2, 7, 400), "invoice_date")):
            expected = metrics.aging(ledger.open_items(invoices, movements, as_of), as_of, spec)
            params = {"as_of": as_of.isoformat(), "currency": "USD", "basis": spec.basis,
                      "buckets": ",".join(map(str, spec.edges))}
            assert await _every_customer(client, params, limit=2) == _customers_of(expected.customers), (as_of, spec)
            grouped = await get(client, "/v1/reports/aging", group_by="collector", limit=1, **params)
            assert [(g["key"], g["buckets"], g["total"], g["invoice_count"]) for g in grouped["groups"]] == \
                _customers_of(metrics.group_aging(expected, lambda a: collectors[a.item.customer_id])), (as_of, spec)
            assert grouped["tie_out"]["ties_out"] is True and len(grouped["customers"]) <= 1
        # A page's tie-out reads the snapshot's per-kind sums; they equal the facts' (what one
        # customer's and an export's tie-out add up).
        async with app.state.runtime.engine.connect() as conn:
            assert await snapshot_ledger_totals(conn, "USD", as_of) == await ledger_totals(conn, "USD", as_of), as_of
    for start, end in ((date(2024, 2, 1), date(2024, 2, 29)), (date(2024, 1, 1), date(2024, 6, 30))):
        rf = ledger.roll_forward(invoices, movements, start, end)
        got = await get(client, "/v1/reports/roll-forward", currency="USD",
                        **{"from": start.isoformat(), "to": end.isoformat()})
        assert {k: Decimal(got[k]) for k in ledger.ROLL_FORWARD_LINES} == {
            k: getattr(rf, k) for k in ledger.ROLL_FORWARD_LINES} and got["ties"] is True, (start, end)
        kpis = await get(client, "/v1/reports/kpis", currency="USD",
                         **{"from": start.isoformat(), "to": end.isoformat()})
        assert Decimal(kpis["beginning_ar"]) == ledger.total_open(invoices, movements, start - timedelta(days=1))
        assert Decimal(kpis["ending_ar"]) == rf.closing
    # The forecast summed in SQL places the money as the domain rule does invoice by invoice.
    as_of = date(2024, 3, 31)
    due = {i.invoice_id: (i.customer_id, i.due_date) for i in invoices}
    paid: dict[str, list] = {}
    for m in movements:
        if m.kind == "cash" and m.amount > 0 and m.on_date <= as_of:
            customer, due_date = due[m.invoice_id]
            paid.setdefault(customer, []).append((m.amount, max(0, (m.on_date - due_date).days)))
    delays = {c: sum(a * d for a, d in rows) / sum(a for a, _ in rows) for c, rows in paid.items()}
    expected = forecast_rule(as_of, ledger.open_items(invoices, movements, as_of), delays, [])
    got = await get(client, "/v1/reports/forecast", as_of=as_of.isoformat(), currency="USD")
    assert [w["invoices"] for w in got["weeks"]] == [str(w.by_source["invoices"].quantize(Decimal("0.01")))
                                                     for w in expected.weeks]
    assert got["beyond"] == str(expected.beyond.quantize(Decimal("0.01")))


async def test_the_snapshot_migration_backfills_facts_recorded_before_it():
    """A database that has facts from 0001 gets its ar_deltas rows when 0002 applies: the same
    rows the rebuild computes."""
    async with fresh_database("backfill") as name:
        runtime = Runtime(definition(ReportingSettings(database_url=sqlalchemy_url(name))))
        migrations = runtime.migrations()
        first = [m for m in migrations if not m[0].startswith("reporting/") or m[0] == "reporting/0001_reporting.sql"]
        engine = make_engine(sqlalchemy_url(name))
        try:
            await apply_migrations(engine, first)
            async with engine.begin() as conn:
                await conn.execute(text(
                    "INSERT INTO invoices (invoice_id, invoice_number, customer_id, currency, amount, issue_date,"
                    " due_date, event_id) VALUES ('X1', 'N1', 'C1', 'USD', 100, '2024-01-10', '2024-02-09', 'e1'),"
                    " ('X2', 'N2', 'C1', 'USD', 50, '2024-01-20', '2024-02-19', 'e2')"))
                await conn.execute(text(
                    "INSERT INTO applications (event_id, payment_id, invoice_id, customer_id, currency, amount,"
                    " value_date) VALUES ('e3', 'P1', 'X1', 'C1', 'USD', 30, '2024-01-05')"))
            await apply_migrations(engine, migrations)
            async with engine.begin() as conn:
                migrated = [tuple(r) for r in await conn.execute(text("SELECT * FROM ar_deltas ORDER BY 1, 2, 3, 4"))]
                await rebuild_deltas(conn)
                rebuilt = [tuple(r) for r in await conn.execute(text("SELECT * FROM ar_deltas ORDER BY 1, 2, 3, 4"))]
            assert migrated == rebuilt and len(migrated) == 2
            assert sum(r[4] - r[5] for r in migrated) == Decimal("120.00")
        finally:
            await engine.dispose()
            await runtime.dispose()


async def test_a_reversed_small_balance_write_off_reopens_the_balance(reporting):
    client, app = reporting
    await _load(app)
    # B's 0.50 small balance (written off Mar 12) is reversed on Mar 20 with its application.
    await feed(app.state.runtime.engine, [received(SmallBalanceWriteOffReversed(
        adjustment_id="ADJ1", payment_id="PB", invoice_id="B", customer_id="C1", amount="0.50", currency="USD",
        reversed_on="2024-03-20", reason="manual_reversal"))])
    mar15 = await get(client, "/v1/reports/aging", as_of="2024-03-15", currency="USD", customer_id="C1")
    assert [(i["invoice_id"], i["adjusted"], i["open_balance"]) for i in mar15["invoices"]] == [("A", "0.00", "1000.00")]
    mar31 = await get(client, "/v1/reports/aging", as_of="2024-03-31", currency="USD", customer_id="C1")
    assert [(i["invoice_id"], i["adjusted"], i["open_balance"]) for i in mar31["invoices"]] == [
        ("A", "0.00", "600.00"), ("B", "0.00", "0.50")]
    summary = await get(client, "/v1/reports/aging/summary", as_of="2024-03-31", currency="USD")
    assert summary["total"] == "900.50"
    march = await get(client, "/v1/reports/roll-forward", period="2024-03", currency="USD")
    assert (march["adjustments"], march["closing"], march["ties"]) == ("0.00", "900.50", True)
