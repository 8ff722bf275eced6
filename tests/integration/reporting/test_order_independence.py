"""Property-based (hypothesis, few examples): whatever the interleaving of the four topics'
events, each topic in its own order as Kafka delivers it, the read model on PostgreSQL gives
the same reports as the canonical order: aging (with the tie-out), KPIs, roll-forward,
forecast, disputes, collectors."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import date

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from reporting_book import book, received, rich_book
from services.reporting.adapters.repository import FACT_TABLES
from services.reporting.api import period_schemas as ps
from services.reporting.api import schemas
from services.reporting.application import period_reports as pr
from services.reporting.application import reports
from services.reporting.main import definition
from services.reporting.projections.facts import project
from services.reporting.settings import ReportingSettings
from shared.service import Runtime
from tests.support.infra import fresh_database, sqlalchemy_url

EVENTS = [received(e) for e in rich_book() + book()]
BY_TOPIC: dict[str, list] = defaultdict(list)
for _event in EVENTS:
    BY_TOPIC[_event.topic].append(_event)
TOPICS = sorted(BY_TOPIC)
MARCH = (date(2024, 3, 1), date(2024, 3, 31))


@pytest.fixture(scope="module")
def database():
    """One migrated database on a private event loop for every example (tests here are sync,
    so hypothesis drives them; each example empties the facts first)."""
    loop = asyncio.new_event_loop()
    databases = fresh_database("order")
    name = loop.run_until_complete(databases.__aenter__())
    runtime = Runtime(definition(ReportingSettings(database_url=sqlalchemy_url(name))))
    loop.run_until_complete(runtime.migrate())
    try:
        yield loop, runtime.engine
    finally:
        loop.run_until_complete(runtime.dispose())
        loop.run_until_complete(databases.__aexit__(None, None, None))
        loop.close()


async def _reports(engine, events, batches: list[list] | None = None) -> list:
    """The reports after projecting `events` one per transaction, or, given `batches`, each
    batch in one transaction through the consumer's apply_batch (set-based)."""
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(FACT_TABLES)}"))
    if batches is None:
        for event in events:
            async with engine.begin() as conn:
                await project(conn, event)
    else:
        for batch in batches:
            async with engine.begin() as conn:
                await project.apply_batch(conn, batch)
    async with engine.connect() as conn:
        deltas = [tuple(r) for r in await conn.execute(text(
            "SELECT * FROM ar_deltas WHERE invoiced <> 0 OR moved <> 0 ORDER BY currency, eff_date, due_date,"
            " issue_date"))]
        return [
            deltas,
            schemas.aging_out(await reports.aging_report(conn, date(2024, 3, 31), "USD",
                                                         group_by="collector")).model_dump(),
            schemas.aging_out(await reports.aging_report(conn, date(2024, 3, 6), "USD", "C1")).model_dump(),
            schemas.aging_summary_out(await reports.aging_totals(conn, date(2024, 3, 6), "USD")).model_dump(),
            [ps.kpis_out(k).model_dump() for k in await pr.kpi_trend(conn, date(2024, 1, 1), date(2024, 4, 30),
                                                                      "month", "USD")],
            ps.roll_forward_out(await pr.roll_forward(conn, *MARCH, "USD")).model_dump(),
            ps.forecast_out(await pr.forecast(conn, date(2024, 3, 10), "USD", date(2024, 3, 31))).model_dump(),
            ps.disputes_out("USD", *MARCH, (await pr.disputes_by_reason(conn, *MARCH, "USD"))[1]).model_dump(),
            ps.collectors_out("USD", *MARCH, (await pr.collector_performance(conn, *MARCH, "USD"))[1]).model_dump(),
        ]


@pytest.fixture(scope="module")
def canonical(database):
    loop, engine = database
    return loop.run_until_complete(_reports(engine, EVENTS))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(TOPICS), min_size=len(EVENTS), max_size=len(EVENTS)))
def test_reports_do_not_depend_on_how_the_topics_interleave(database, canonical, picks):
    loop, engine = database
    queues = {topic: list(events) for topic, events in BY_TOPIC.items()}
    order = []
    for topic in picks:  # take from the picked topic, or the next one that still has events
        for candidate in TOPICS[TOPICS.index(topic):] + TOPICS[:TOPICS.index(topic)]:
            if queues[candidate]:
                order.append(queues[candidate].pop(0))
                break
    assert len(order) == len(EVENTS)
    got = loop.run_until_complete(_reports(engine, order))
    assert got == canonical
    assert got[1]["tie_out"]["ties_out"] is True


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=len(EVENTS)),
       st.lists(st.integers(min_value=0, max_value=len(EVENTS) - 1), max_size=20),
       st.lists(st.integers(min_value=0, max_value=len(EVENTS)), max_size=3))
@example(sizes=[len(EVENTS)], duplicates=[], redelivered=[])  # the whole book in one batch
@example(sizes=[len(EVENTS)], duplicates=list(range(len(EVENTS))), redelivered=[0])  # every event twice
def test_reports_are_the_same_when_events_are_applied_in_batches(database, canonical, sizes, duplicates, redelivered):
    """The consumer's set-based apply_batch gives the read model (facts, ar_deltas, every
    report, to the cent) of the per-event handler: batches of any size mixing event types that
    touch the same invoice (issued, paid, credited, adjusted in one batch), an event delivered
    twice within its batch (the natural keys absorb it, even without the inbox), and whole
    batches delivered again."""
    loop, engine = database
    batches: list[list] = []
    i = 0
    for size in sizes:
        if i >= len(EVENTS):
            break
        batches.append(list(EVENTS[i:i + size]))
        i += size
    if i < len(EVENTS):
        batches.append(list(EVENTS[i:]))
    for d in duplicates:  # the event again, right after itself, in its batch
        for batch in batches:
            if EVENTS[d] in batch:
                batch.insert(batch.index(EVENTS[d]) + 1, EVENTS[d])
                break
    for r in redelivered:
        if r < len(batches):
            batches.insert(r + 1, list(batches[r]))
    got = loop.run_until_complete(_reports(engine, EVENTS, batches))
    assert got == canonical
    assert got[1]["tie_out"]["ties_out"] is True
