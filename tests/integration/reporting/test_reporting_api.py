"""Reporting over HTTP on a real PostgreSQL database, fed by calling its consumer handler with
the events other contexts publish. Expected values are worked out by hand in the comments."""
from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import uuid
from datetime import date, timedelta
from decimal import Decimal

from aiokafka.structs import ConsumerRecord
from sqlalchemy import text

from shared.consumer import ConsumerRunner, ReceivedEvent
from shared.db import make_engine
from shared.contracts import CreditMemoIssued
from reporting_book import applied, book, feed, get, invoice, received, reporting  # noqa: F401
from services.reporting.adapters.repository import FACT_TABLES
from services.reporting.application.rebuild import REFUSED, rebuild
from services.reporting.domain import metrics
from services.reporting.domain.facts import ApplicationFact, CreditFact, InvoiceFact
from services.reporting.projections.facts import CONSUMER_NAME, project
from tests.support.infra import KAFKA, fresh_database, sqlalchemy_url

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def buckets(current="0.00", d30="0.00", d60="0.00", d90="0.00", over90="0.00"):
    return {"current": current, "1-30": d30, "31-60": d60, "61-90": d90, "90+": over90}


async def test_aging_as_of_several_dates_to_the_cent(reporting):
    client, app = reporting
    await feed(app.state.runtime.engine, [received(e) for e in book()])

    # Feb 29: INV-1 20 days past due; INV-2 (due Mar 2) and INV-3 current; INV-5 due Dec 1 is
    # exactly 90 days past due, still 61-90. INV-4 not issued yet; P0's cash is dated Mar 5.
    feb = await get(client, "/v1/reports/aging", as_of="2024-02-29")
    assert feb["currency"] == "USD"
    assert feb["buckets"] == buckets(current="2500.00", d30="1000.00", d90="250.00")
    assert feb["total"] == feb["total_open_balance"] == "3750.00"
    assert feb["tie_out"] == {"invoiced": "3750.00", "credited": "0.00", "applied": "0.00", "adjusted": "0.00",
                              "written_off": "0.00", "net": "3750.00",
                              "ties_out": True}
    assert [(c["customer_id"], c["customer_name"], c["total"], c["invoice_count"]) for c in feb["customers"]] == [
        ("C1", "Acme Wholesale", "1750.00", 3), ("C2", "Globex", "2000.00", 1)]
    assert feb["customers"][0]["buckets"] == buckets(current="500.00", d30="1000.00", d90="250.00")
    assert feb["invoices"] is None

    # Mar 1: INV-5 is 91 days past due.
    mar1 = await get(client, "/v1/reports/aging", as_of="2024-03-01")
    assert mar1["buckets"] == buckets(current="2500.00", d30="1000.00", over90="250.00")

    # Mar 31: INV-1 1000 - 300 - 200 = 500, 51 days; INV-2 500 - 100 credit = 400, 29 days;
    # INV-3 2000, 15 days (paid only Apr 1); INV-4 750.25 current; INV-5 250, 121 days.
    mar31 = await get(client, "/v1/reports/aging", as_of="2024-03-31")
    assert mar31["buckets"] == buckets(current="750.25", d30="2400.00", d60="500.00", over90="250.00")
    assert mar31["total"] == mar31["total_open_balance"] == "3900.25"
    assert mar31["tie_out"] == {"invoiced": "4500.25", "credited": "100.00", "applied": "500.00", "adjusted": "0.00",
                                "written_off": "0.00", "net": "3900.25",
                                "ties_out": True}
    assert await get(client, "/v1/reports/aging") == mar31  # as_of defaults to the clock's today

    # Apr 1: INV-3 settled; INV-2 (due Mar 2) exactly 30 days past due; Apr 2: 31 days.
    apr1 = await get(client, "/v1/reports/aging", as_of="2024-04-01")
    assert apr1["buckets"] == buckets(current="750.25", d30="400.00", d60="500.00", over90="250.00")
    apr2 = await get(client, "/v1/reports/aging", as_of="2024-04-02")
    assert apr2["buckets"] == buckets(current="750.25", d60="900.00", over90="250.00")
    assert apr2["total"] == apr2["total_open_balance"] == apr2["tie_out"]["net"] == "1900.25"


async def test_customer_aging_drills_down_to_invoices(reporting):
    client, app = reporting
    await feed(app.state.runtime.engine, [received(e) for e in book()])
    c1 = await get(client, "/v1/reports/aging", as_of="2024-03-31", customer_id="C1")
    assert c1["buckets"] == buckets(d30="400.00", d60="500.00", over90="250.00")
    assert c1["total"] == c1["total_open_balance"] == c1["tie_out"]["net"] == "1150.00"
    assert [(i["invoice_id"], i["amount"], i["credited"], i["applied"], i["open_balance"], i["days_past_due"],
             i["bucket"]) for i in c1["invoices"]] == [
        ("INV-5", "250.00", "0.00", "0.00", "250.00", 121, "90+"),
        ("INV-1", "1000.00", "0.00", "500.00", "500.00", 51, "31-60"),
        ("INV-2", "500.00", "100.00", "0.00", "400.00", 29, "1-30"),
    ]
    nobody = await get(client, "/v1/reports/aging", as_of="2024-03-31", customer_id="C404")
    assert nobody["total"] == "0.00" and nobody["customers"] == [] and nobody["invoices"] == []


async def test_dso_recovery_rate_and_promises_by_hand(reporting):
    client, app = reporting
    await feed(app.state.runtime.engine, [received(e) for e in book()])

    # February: ending AR (Feb 29) 3750.00; credit sales INV-2 500 + INV-3 2000; 29 days.
    # 3750 / 2500 x 29 = 43.5
    feb = await get(client, "/v1/reports/dso", **{"from": "2024-02-01", "to": "2024-02-29"})
    assert feb == {"from": "2024-02-01", "to": "2024-02-29", "currency": "USD", "days": 29,
                   "ending_ar": "3750.00", "credit_sales": "2500.00", "dso": "43.50", "reason": None}
    # March: 3900.25 / 750.25 x 31 = 161.1566... -> 161.16
    mar = await get(client, "/v1/reports/dso", **{"from": "2024-03-01", "to": "2024-03-31"})
    assert (mar["ending_ar"], mar["credit_sales"], mar["days"], mar["dso"]) == ("3900.25", "750.25", 31, "161.16")
    none = await get(client, "/v1/reports/dso", **{"from": "2024-04-02", "to": "2024-04-30"})
    assert none["dso"] is None and "no credit sales" in none["reason"] and none["ending_ar"] == "1900.25"

    # March recovery: past due from Mar 1 INV-5 250 and INV-1 1000, from Mar 3 INV-2 500 (its
    # credit comes Mar 10), from Mar 17 INV-3 2000; collected: INV-1's 300 + 200.
    # 500 / 3750 = 0.13333 -> 0.1333. INV-4 (due Apr 19) is not past due in March.
    rec = await get(client, "/v1/reports/recovery-rate", **{"from": "2024-03-01", "to": "2024-03-31"})
    assert rec == {"from": "2024-03-01", "to": "2024-03-31", "currency": "USD", "past_due_balance": "3750.00",
                   "collected": "500.00", "invoice_count": 4, "recovery_rate": "0.1333", "reason": None}
    # April: balances on Apr 1 before that day's cash: INV-5 250, INV-1 500, INV-2 400,
    # INV-3 2000 (paid in full on Apr 1, its first past-due day in the period: collected), and
    # from Apr 20 INV-4 750.25. 2000 / 3900.25 = 0.51278 -> 0.5128
    apr = await get(client, "/v1/reports/recovery-rate", **{"from": "2024-04-01", "to": "2024-04-30"})
    assert (apr["past_due_balance"], apr["collected"], apr["invoice_count"], apr["recovery_rate"]) == (
        "3900.25", "2000.00", 5, "0.5128")
    jan = await get(client, "/v1/reports/recovery-rate", **{"from": "2023-11-01", "to": "2023-11-30"})
    assert jan["recovery_rate"] is None and jan["reason"]

    # March promises: made PR1 200, PR2 2000, PR3 250; PR1 kept, PR2 broken; PR3 open.
    promises = await get(client, "/v1/reports/promises", **{"from": "2024-03-01", "to": "2024-03-31"})
    assert promises == {
        "from": "2024-03-01", "to": "2024-03-31", "currency": "USD",
        "made": {"count": 3, "amount": "2450.00"},
        "kept": {"count": 1, "amount": "200.00", "paid_amount": "200.00"},
        "broken": {"count": 1, "amount": "2000.00", "paid_amount": "0.00", "shortfall": "2000.00"},
        "open": {"count": 1, "amount": "250.00"},
        "kept_rate": "0.5000",
    }
    # On Mar 20 PR1 and PR2 were both still open; nothing was kept or broken yet.
    early = await get(client, "/v1/reports/promises", **{"from": "2024-03-01", "to": "2024-03-20"})
    assert (early["made"]["count"], early["open"], early["kept_rate"]) == (2, {"count": 2, "amount": "2200.00"}, None)


async def test_summary_and_what_is_waiting_for_its_invoice(reporting):
    client, app = reporting
    engine = app.state.runtime.engine
    events = [received(e) for e in book()]
    await feed(engine, events[:1])  # P0's application, before INV-1 is known
    early = await get(client, "/v1/reports/summary", as_of="2024-03-31")
    assert early["total_open_balance"] == "0.00"
    assert early["awaiting_invoice"]["applications"] == {"count": 1, "amount": "300.00"}

    await feed(engine, events[1:])
    summary = await get(client, "/v1/reports/summary")  # the clock says Mar 31
    assert summary == {
        "as_of": "2024-03-31", "currency": "USD",
        "total_open_balance": "3900.25", "current": "750.25", "past_due": "3150.00",
        "buckets": buckets(current="750.25", d30="2400.00", d60="500.00", over90="250.00"),
        "open_invoice_count": 5, "customers_with_open_balance": 2,
        # P0 600 received, 300 applied; P2 200 received and applied; P1 arrives Apr 1.
        "unapplied_cash": "300.00",
        "open_disputes": {"count": 0, "amount": "0.00"},  # D1 resolved Mar 10
        "open_deductions": {"count": 1, "amount": "50.00"},
        "open_promises": {"count": 1, "amount": "250.00"},
        "awaiting_invoice": {"credits": {"count": 0, "amount": "0.00"},
                             "applications": {"count": 1, "amount": "75.00"},
                             "adjustments": {"count": 0, "amount": "0.00"},
                             "write_offs": {"count": 0, "amount": "0.00"}},
    }
    mar8 = await get(client, "/v1/reports/summary", as_of="2024-03-08")
    assert mar8["open_disputes"] == {"count": 1, "amount": "100.00"}
    assert mar8["unapplied_cash"] == "300.00" and mar8["open_promises"]["count"] == 1


async def _report_snapshot(client) -> list:
    period = {"from": "2024-03-01", "to": "2024-03-31"}
    return [
        await get(client, "/v1/reports/aging", as_of="2024-03-31"),
        await get(client, "/v1/reports/aging", as_of="2024-03-31", customer_id="C1"),
        await get(client, "/v1/reports/dso", **period),
        await get(client, "/v1/reports/recovery-rate", **period),
        await get(client, "/v1/reports/promises", **period),
        await get(client, "/v1/reports/summary", as_of="2024-03-31"),
    ]


async def _fact_counts(engine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {t: (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one() for t in FACT_TABLES}


async def test_redelivered_events_change_nothing(reporting):
    client, app = reporting
    engine = app.state.runtime.engine
    events = [received(e) for e in book()]
    await feed(engine, events)
    before, counts = await _report_snapshot(client), await _fact_counts(engine)
    assert counts["applications"] == 4 and counts["promise_outcomes"] == 2

    # The handler called again with the very same events (same event_id), in another order:
    # no inbox in front of it here, the fact keys alone must absorb them.
    await feed(engine, list(reversed(events)))
    assert await _fact_counts(engine) == counts
    assert await _report_snapshot(client) == before


async def test_currency_is_required_when_the_book_has_several(reporting):
    client, app = reporting
    engine = app.state.runtime.engine
    empty = await client.get("/v1/reports/aging", params={"as_of": "2024-03-31"})
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "currency"

    await feed(engine, [received(invoice("U1", "C1", "10.00", "2024-03-01", "2024-03-31"))])
    assert (await get(client, "/v1/reports/aging", as_of="2024-03-31"))["currency"] == "USD"

    await feed(engine, [received(invoice("J1", "C9", "10000", "2024-03-01", "2024-03-11", currency="JPY")),
                        received(applied("PJ", "J1", "C9", "2500", "2024-03-05", currency="JPY"))])
    for path, params in (("/v1/reports/aging", {}), ("/v1/reports/dso", {"from": "2024-03-01", "to": "2024-03-31"}),
                         ("/v1/reports/summary", {})):
        r = await client.get(path, params=params)
        assert r.status_code == 422, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"][0]["field"] == "currency" and "JPY, USD" in r.json()["detail"]

    jpy = await get(client, "/v1/reports/aging", as_of="2024-03-31", currency="jpy")
    assert (jpy["currency"], jpy["buckets"]["1-30"], jpy["total"]) == ("JPY", "7500", "7500")
    usd = await get(client, "/v1/reports/aging", as_of="2024-03-31", currency="USD")
    assert usd["buckets"]["current"] == "10.00" and usd["total"] == "10.00"

    bad = await client.get("/v1/reports/aging", params={"currency": "ZZZ"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "currency"
    backwards = await client.get("/v1/reports/dso", params={"from": "2024-03-02", "to": "2024-03-01",
                                                            "currency": "USD"})
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "from"
    not_a_date = await client.get("/v1/reports/aging", params={"as_of": "31/03/2024", "currency": "USD"})
    assert not_a_date.status_code == 422 and not_a_date.json()["errors"][0]["field"] == "as_of"


def _random_book(rng: random.Random):
    """Facts as events and as the domain sees them, for the SQL-vs-rules cross-check."""
    day0 = date(2024, 1, 1)
    events, invoices, credits, applications = [], [], [], []
    for n in range(25):
        issue = day0 + timedelta(days=rng.randrange(0, 150))
        due = issue + timedelta(days=rng.choice([0, 10, 30, 45, 60]))
        amount = Decimal(rng.randrange(100, 500_000)).scaleb(-2)
        customer = f"C{rng.randrange(4)}"
        invoices.append(InvoiceFact(f"I{n}", customer, "USD", amount, issue, due))
        events.append(invoice(f"I{n}", customer, str(amount), issue, due))
    for n in range(45):
        target = rng.choice(invoices[:22])  # the last three invoices get nothing, yet
        invoice_id = target.invoice_id if rng.random() < 0.9 else "I-unknown"
        amount = Decimal(rng.randrange(1, 200_000)).scaleb(-2)
        on = target.issue_date + timedelta(days=rng.randrange(0, 120))
        if rng.random() < 0.3:
            credits.append(CreditFact(f"CM{n}", invoice_id, amount, on))
            events.append(CreditMemoIssued(credit_memo_id=f"CM{n}", invoice_id=invoice_id, customer_id="C0",
                                           currency="USD", amount=str(amount), issue_date=on, reason="x"))
        else:
            payment = f"P{rng.randrange(30)}"  # a payment may be applied to one invoice twice
            applications.append(ApplicationFact(payment, invoice_id, amount, on))
            events.append(applied(payment, invoice_id, "C0", str(amount), on))
    rng.shuffle(events)
    return events, invoices, credits, applications


async def test_sql_reports_equal_the_domain_rules_on_a_shuffled_random_book(reporting):
    client, app = reporting
    events, invoices, credits, applications = _random_book(random.Random(20240331))
    await feed(app.state.runtime.engine, [received(e) for e in events])
    for as_of in (date(2024, 1, 15), date(2024, 3, 1), date(2024, 4, 30), date(2024, 6, 30), date(2024, 12, 31)):
        expected = metrics.aging(metrics.open_items(invoices, credits, applications, as_of), as_of)
        got = await get(client, "/v1/reports/aging", as_of=as_of.isoformat())
        assert got["buckets"] == {k: str(v.quantize(Decimal("0.01"))) for k, v in expected.buckets.items()}, as_of
        assert got["total"] == got["total_open_balance"] == got["tie_out"]["net"]
        assert got["tie_out"]["ties_out"] is True
    for start, end in ((date(2024, 2, 1), date(2024, 2, 29)), (date(2024, 1, 1), date(2024, 6, 30))):
        period = {"from": start.isoformat(), "to": end.isoformat()}
        expected_rec = metrics.recovery_rate(metrics.recovery_items(invoices, credits, applications, start, end))
        rec = await get(client, "/v1/reports/recovery-rate", **period)
        assert (Decimal(rec["past_due_balance"]), Decimal(rec["collected"]), rec["invoice_count"]) == (
            expected_rec.past_due_balance, expected_rec.collected, expected_rec.invoice_count)
        assert rec["recovery_rate"] == (None if expected_rec.rate is None else str(expected_rec.rate))
        expected_dso = metrics.dso(
            metrics.ending_ar(metrics.open_items(invoices, credits, applications, end), end),
            metrics.credit_sales(invoices, start, end), metrics.period_days(start, end))
        dso = await get(client, "/v1/reports/dso", **period)
        assert (Decimal(dso["ending_ar"]), Decimal(dso["credit_sales"]), dso["dso"]) == (
            expected_dso.ending_ar, expected_dso.credit_sales, str(expected_dso.value))


def _record(event: ReceivedEvent, offset: int) -> ConsumerRecord:
    headers = [("ce_id", event.event_id.encode()), ("ce_type", event.event_type.encode()),
               ("ce_schemaversion", str(event.schema_version).encode())]
    value = json.dumps(event.data).encode()
    return ConsumerRecord(topic=event.topic, partition=0, offset=offset, timestamp=0, timestamp_type=0, key=None,
                          value=value, checksum=None, serialized_key_size=0, serialized_value_size=len(value),
                          headers=headers)


async def test_rebuild_forgets_facts_inbox_and_offsets_and_a_replay_restores_the_reports(reporting):
    client, app = reporting
    engine = app.state.runtime.engine
    events = [received(e) for e in book()]
    # Through the consumer runner's own transaction (inbox + offsets), as in production.
    runner = ConsumerRunner(engine, "127.0.0.1:1", CONSUMER_NAME, [], project)
    for offset, event in enumerate(events):
        await runner.process(_record(event, offset))
    await runner.process(_record(events[3], 3))  # redelivered at its offset: the stored offset drops it
    await runner.process(_record(events[3], len(events)))  # republished at a new offset: the inbox drops it
    assert runner.handled == len(events) + 1  # the republished one counts as a (duplicate) delivery
    built = await _report_snapshot(client)
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO inbox (consumer, event_id) VALUES ('someone-else', 'e1')"))
        await conn.execute(text("INSERT INTO consumer_offsets (consumer, topic, partition, next_offset)"
                                " VALUES ('someone-else', 't', 0, 7)"))

    async def rows(sql: str) -> int:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar_one()

    said: list[str] = []
    # Kafka cannot be asked whether the group is idle: refused, nothing touched.
    assert await rebuild(engine, "127.0.0.1:1", CONSUMER_NAME, say=said.append) == REFUSED
    assert "--force" in said[-1] and await rows("SELECT count(*) FROM invoices") == 5

    assert await rebuild(engine, "127.0.0.1:1", CONSUMER_NAME, force=True, say=said.append) == 0
    assert set((await _fact_counts(engine)).values()) == {0}
    assert await rows("SELECT count(*) FROM inbox WHERE consumer = 'reporting'") == 0
    assert await rows("SELECT count(*) FROM consumer_offsets WHERE consumer = 'reporting'") == 0
    assert await rows("SELECT count(*) FROM inbox WHERE consumer = 'someone-else'") == 1
    assert await rows("SELECT count(*) FROM consumer_offsets WHERE consumer = 'someone-else'") == 1

    # The replay from offset 0 (here in another order across topics) rebuilds the same reports.
    replay = ConsumerRunner(engine, "127.0.0.1:1", CONSUMER_NAME, [], project)
    for offset, event in enumerate(sorted(events, key=lambda e: (e.topic, e.event_type))):
        await replay.process(_record(event, offset))
    assert await _report_snapshot(client) == built


async def _kafka_reachable() -> bool:
    host, port = KAFKA.rsplit(":", 1)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


async def _until(condition, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_through_kafka_rebuild_refuses_while_consuming_then_replays_from_offset_0(reporting):
    """The whole path on a private topic (3 partitions, so arrival order is arbitrary): the
    runner builds the facts; rebuild refuses while the group has members; once stopped, rebuild
    clears, and the next run replays from offset 0 to the same reports."""
    assert await _kafka_reachable(), f"Kafka is not listening at {KAFKA}: run make infra-up"
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from shared.relay import make_producer
    from tests.support.kafka import EVENT_TOPIC_CONFIG

    client, app = reporting
    engine = app.state.runtime.engine
    topic, group = f"ll-test-reporting-{uuid.uuid4().hex[:8]}", f"reporting-test-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1,
                                         topic_configs=EVENT_TOPIC_CONFIG)])
    try:
        events = [received(e) for e in book()]
        producer = make_producer(KAFKA, "reporting-test")
        await producer.start()
        try:
            for event in events:
                await producer.send_and_wait(topic, json.dumps(event.data).encode(), key=uuid.uuid4().bytes, headers=[
                    ("ce_id", event.event_id.encode()), ("ce_type", event.event_type.encode()),
                    ("ce_schemaversion", b"1")])
        finally:
            await producer.stop()

        async def run_until_all_handled() -> tuple[ConsumerRunner, asyncio.Task]:
            runner = ConsumerRunner(engine, KAFKA, group, [topic], project)
            task = asyncio.create_task(runner.run())
            await _until(lambda: runner.handled >= len(events))
            return runner, task

        runner, task = await run_until_all_handled()
        built = await _report_snapshot(client)
        assert built[0]["total"] == "3900.25"
        said: list[str] = []
        assert await rebuild(engine, KAFKA, group, say=said.append) == REFUSED
        assert "is running" in said[-1]
        runner.stop()
        await asyncio.wait_for(task, 20)

        assert await rebuild(engine, KAFKA, group, say=said.append) == 0, said
        assert (await get(client, "/v1/reports/aging", as_of="2024-03-31", currency="USD"))["total"] == "0.00"
        runner, task = await run_until_all_handled()
        runner.stop()
        await asyncio.wait_for(task, 20)
        assert await _report_snapshot(client) == built
    finally:
        await admin.delete_topics([topic])
        await admin.close()


async def test_rebuild_command_line_clears_the_running_consumers_rows():
    """python -m services.reporting rebuild --force, with a topic prefix: the consumer the shell
    runs is <prefix>.reporting, and only its inbox and offsets rows go."""
    async with fresh_database("cli") as name:
        env = {**os.environ, "LEDGERLINE_REPORTING_DATABASE_URL": sqlalchemy_url(name),
               "LEDGERLINE_REPORTING_TOPIC_PREFIX": "t42"}

        async def cli(*args: str) -> str:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.reporting", *args, cwd=ROOT, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, stderr.decode()
            return stdout.decode()

        await cli("migrate")
        engine = make_engine(sqlalchemy_url(name))
        try:
            await feed(engine, [received(e) for e in book()[:6]])
            async with engine.begin() as conn:
                for consumer in ("t42.reporting", "ledgerline.reporting"):
                    await conn.execute(text("INSERT INTO inbox (consumer, event_id) VALUES (:c, 'e1')"), {"c": consumer})
            out = await cli("rebuild", "--force", "--clear-only")
            assert "replay its topics from offset 0" in out
            async with engine.connect() as conn:
                left = (await conn.execute(text("SELECT consumer FROM inbox"))).scalars().all()
                invoices = (await conn.execute(text("SELECT count(*) FROM invoices"))).scalar_one()
            assert left == ["ledgerline.reporting"] and invoices == 0
            # The batch rebuild reads t42.* (none exist here): nothing to load, nothing left over.
            await feed(engine, [received(e) for e in book()[:6]])
            out = await cli("rebuild", "--force", "--no-progress")
            assert "rebuild: 0 events" in out and "t42.invoicing.events" in out
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT count(*) FROM invoices"))).scalar_one() == 0
        finally:
            await engine.dispose()
