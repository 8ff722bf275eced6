"""No message stops a consumer (issue 13, item 1): whatever a message's bytes and headers, the
real ConsumerRunner on the real Kafka and PostgreSQL applies it or parks it with its raw bytes,
every partition's stored offset reaches the end, and valid events beside it (same batch, other
partitions) are applied exactly once.

On the code before issue 13 these tests fail: a NUL byte, a bad ce_time or ce_schemaversion or
non-UTF-8 header bytes raised something other than PoisonMessage, the runner restarted at the
stored offset and met the message again, forever."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import asyncpg
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from shared.consumer import ConsumerRunner, PoisonMessage, decode_headers, decode_raw
from shared.db import apply_migrations, make_engine, sql_files
from tests.support.infra import KAFKA, asyncpg_dsn, sqlalchemy_url
from tests.support.kafka import ce_headers, create_topic
from tests.support.tally import TALLY_DDL, handler_for, tally

Message = tuple[int, bytes | None, list[tuple[str, bytes]]]

# Header values: well-formed ones, and anything at all (NUL bytes, invalid UTF-8, empty).
_header_value = st.one_of(
    st.sampled_from([b"Tested", b"1", b"2024-01-01T00:00:00+00:00", b"k", b"\x00", b"1.5", b"not a time",
                     b"\xff\xfe", b"-3", b"99999999999999999999", b"", b"T\x00sted"]),
    st.binary(max_size=24),
)
_headers = st.lists(
    st.tuples(st.one_of(st.sampled_from(["ce_id", "ce_type", "ce_time", "ce_schemaversion", "ce_subject",
                                         "ce_streamversion", "traceparent"]),
                        st.text(st.characters(exclude_categories=("Cs",)), max_size=8)),
              _header_value),
    max_size=7,
)
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=8)
_value = st.one_of(
    st.binary(max_size=48),                                                   # anything, framed binary included
    _json.map(lambda v: json.dumps(v).encode()),                             # JSON, object or not
    st.integers().map(lambda n: json.dumps({"n": n}).encode()),              # a tally event, maybe too big for bigint
    st.just(b'{"n": 1, "note": "\\u0000"}'), st.just(b'{"n": NaN}'),
    st.just(b'\x00{"n": 1}'), st.just(None),
)
_arbitrary = st.tuples(_value, _headers)


def _valid(n: int, subject: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    return json.dumps({"n": n}).encode(), ce_headers("Tested", subject=subject)


async def _produce(topic: str, messages: list[Message], transactions: int = 0) -> list[tuple[int, int]]:
    """Send the messages; with transactions=n, in Kafka transactions of n messages each, as the
    relay does (each commit marker takes an offset: a partition's offsets then have holes)."""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, enable_idempotence=True, acks="all",
                                transactional_id=f"test-{uuid.uuid4().hex}" if transactions else None)
    await producer.start()
    try:
        placed = []
        step = transactions or len(messages)
        for i in range(0, len(messages), step):
            if transactions:
                await producer.begin_transaction()
            futures = [await producer.send(topic, value, key=b"k", headers=headers, partition=partition)
                       for partition, value, headers in messages[i:i + step]]
            placed += [(m.partition, m.offset) for m in await asyncio.gather(*futures)]
            if transactions:
                await producer.commit_transaction()
        return placed
    finally:
        await producer.stop()


async def _run_until_stored(engine, runner: ConsumerRunner, topic: str, ends: dict[int, int], timeout: float = 90) -> None:
    task = asyncio.create_task(runner.run())
    try:
        deadline = time.monotonic() + timeout
        while True:
            async with engine.connect() as conn:
                stored = {r.partition: r.next_offset for r in await conn.execute(
                    text("SELECT partition, next_offset FROM consumer_offsets WHERE consumer = :c AND topic = :t"),
                    {"c": runner.name, "t": topic})}
            if all(stored.get(p, 0) >= end for p, end in ends.items()):
                return
            assert not task.done(), task.result()
            assert time.monotonic() < deadline, f"offsets stuck at {stored}, ends {ends}, {runner.status()}"
            await asyncio.sleep(0.1)
    finally:
        runner.stop()
        await task


async def _scenario(url: str, arbitrary: list[tuple[bytes | None, list[tuple[str, bytes]]]]) -> None:
    engine = make_engine(url, pool_size=5)
    try:
        topic = await create_topic("poison-prop", partitions=2)
        group = f"g-{uuid.uuid4().hex[:8]}"
        good = f"good-{uuid.uuid4().hex[:6]}"
        # Valid events before, between and after the arbitrary ones on partition 0, and on partition 1.
        messages: list[Message] = [(0, *_valid(1, good))]
        for value, headers in arbitrary:
            messages.append((0, value, headers))
            messages.append((1, *_valid(10, good + "-p1")))
        messages.append((0, *_valid(100, good)))
        placed = await _produce(topic, messages)
        ends = {p: max(o for q, o in placed if q == p) + 1 for p in (0, 1)}
        runner = ConsumerRunner(engine, KAFKA, group, [topic], handler_for(group), max_attempts=2,
                                backoff_seconds=0.01, max_backoff_seconds=0.05)
        await _run_until_stored(engine, runner, topic, ends)

        async with engine.connect() as conn:
            inbox = set((await conn.execute(text("SELECT event_id FROM inbox WHERE consumer = :c"), {"c": group})).scalars())
            parked = {(r.partition, r.offset): r for r in await conn.execute(
                text("SELECT partition, \"offset\", raw_value, raw_headers, error FROM dead_letters WHERE consumer = :c"),
                {"c": group})}
            model = await tally(conn, group)
        assert model[good] == (101, 2)
        assert model[good + "-p1"] == (10 * len(arbitrary), len(arbitrary))
        for (partition, value, headers), (p, offset) in zip(messages, placed):
            try:
                event = decode_raw(topic, p, offset, headers, value)
            except PoisonMessage:
                event = None
            if (p, offset) in parked:
                row = parked[(p, offset)]
                assert (bytes(row.raw_value) if row.raw_value is not None else None) == value
                assert decode_headers(bytes(row.raw_headers)) == [(k, v) for k, v in headers]
                assert "\x00" not in row.error
            else:
                assert event is not None, f"undecodable message at {p}/{offset} neither parked nor handled"
                assert event.event_id in inbox
    finally:
        await engine.dispose()


def test_any_bytes_and_headers_are_applied_or_parked_and_every_partition_moves_on():
    # Hypothesis drives a synchronous function; each example runs its own event loop on one
    # database made for this test.
    name = f"ll_poison_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(asyncpg_dsn("postgres"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create() -> None:
        await admin(f'CREATE DATABASE "{name}"')
        engine = make_engine(sqlalchemy_url(name), pool_size=2)
        await apply_migrations(engine, sql_files("shared.migrations", "."))
        async with engine.begin() as conn:
            await conn.execute(text(TALLY_DDL))
        await engine.dispose()

    asyncio.run(create())
    try:
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(st.lists(_arbitrary, min_size=1, max_size=10))
        def check(arbitrary):
            asyncio.run(_scenario(sqlalchemy_url(name), arbitrary))

        check()
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def test_each_kind_of_poison_from_the_issue_is_parked_and_valid_events_around_it_applied(platform_db):
    """The messages that stopped four services' consumers, one of each, between valid events."""
    engine, url = platform_db
    async with engine.begin() as conn:
        await conn.execute(text(TALLY_DDL))
    poison = [
        (b'{"n": 1, "x": "\\u0000"}', ce_headers("Tested", subject="bad")),             # NUL in the value
        (b'\x00\x00\x00\x01framed', ce_headers("Tested", subject="bad")),               # framed binary
        (json.dumps({"n": 1}).encode(), ce_headers("Tested", subject="b\x00d")),        # NUL in a header
        (json.dumps({"n": 1}).encode(), ce_headers("Tested", subject="bad") + [("x-bin", b"\xff\xfe\x00")]),
        (json.dumps({"n": 1}).encode(), ce_headers("Tested", subject="bad", ce_time="yesterday")),
        (json.dumps({"n": 1}).encode(), ce_headers("Tested", subject="bad", ce_schemaversion="two")),
        (json.dumps({"n": 1}).encode(), [(k, v) for k, v in ce_headers("Tested", subject="bad") if k != "ce_type"]),
        (b"[1, 2]", ce_headers("Tested", subject="bad")),
        (b"not json", ce_headers("Tested", subject="bad")),
        (json.dumps({"n": 10 ** 30}).encode(), ce_headers("Tested", subject="bad")),  # the handler's bigint refuses it
    ]
    topic = await create_topic("poison-kinds", partitions=2)
    messages: list[Message] = []
    for value, headers in poison:
        messages.append((0, *_valid(1, "ok")))
        messages.append((0, value, headers))
        messages.append((1, *_valid(2, "other")))
    placed = await _produce(topic, messages)
    ends = {p: max(o for q, o in placed if q == p) + 1 for p in (0, 1)}
    group = f"g-{uuid.uuid4().hex[:8]}"
    runner = ConsumerRunner(engine, KAFKA, group, [topic], handler_for(group), max_attempts=2, backoff_seconds=0.01)
    await _run_until_stored(engine, runner, topic, ends)
    async with engine.connect() as conn:
        model = await tally(conn, group)
        parked = (await conn.execute(text("SELECT \"offset\", raw_value FROM dead_letters WHERE consumer = :c"
                                          " ORDER BY \"offset\""), {"c": group})).all()
    assert model == {"ok": (len(poison), len(poison)), "other": (2 * len(poison), len(poison))}
    assert [p.offset for p in parked] == [o for (part, _, _), (q, o) in zip(messages, placed) if part == 0 and o % 2 == 1]
    assert [bytes(p.raw_value) for p in parked] == [value for value, _ in poison]
    assert runner.parked == len(poison)
