"""The event store's invariants on real PostgreSQL."""
from __future__ import annotations

import asyncio
import json
import random
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from shared import eventstore
from shared.eventstore import ConcurrencyError, NewEvent
from tests.support.infra import asyncpg_dsn, fresh_database

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


def ev(n: int) -> NewEvent:
    return NewEvent(event_type="Tested", schema_version=1, payload={"n": n}, occurred_at=NOW)


async def test_append_with_expected_version_and_conflict(platform_db):
    engine, _ = platform_db
    async with engine.begin() as conn:
        assert await eventstore.append(conn, "s-1", "s", 0, [ev(1), ev(2)]) == 2
    async with engine.begin() as conn:
        with pytest.raises(ConcurrencyError):
            await eventstore.append(conn, "s-1", "s", 1, [ev(3)])  # stale expectation
    async with engine.begin() as conn:
        with pytest.raises(ConcurrencyError):
            await eventstore.append(conn, "s-1", "s", 0, [ev(3)])  # "new stream" but it exists
    async with engine.connect() as conn:
        events = await eventstore.read_stream(conn, "s-1")
    assert [e.version for e in events] == [1, 2] and [e.payload["n"] for e in events] == [1, 2]


async def test_an_append_belongs_to_the_callers_transaction_even_as_its_first_statement(platform_db):
    """append runs on the driver's connection: rolled back with the caller's transaction, kept
    only when it commits, also when it is the transaction's first statement or runs on a
    connection that has not begun (it begins, as execute would)."""
    engine, _ = platform_db
    async with engine.connect() as conn:
        async with conn.begin() as tx:
            await eventstore.append(conn, "tx-1", "s", 0, [ev(1)])
            await tx.rollback()
    async with engine.connect() as conn:  # begun by append, closed without a commit
        await eventstore.append(conn, "tx-1", "s", 0, [ev(1)])
        assert conn.in_transaction()
    async with engine.connect() as conn:
        assert await eventstore.stream_version(conn, "tx-1") == 0
    async with engine.begin() as conn:  # the first statement of a committed transaction
        await eventstore.append(conn, "tx-1", "s", 0, [ev(1), ev(2)])
        await conn.execute(text("SELECT 1"))
    async with engine.connect() as conn:
        assert await eventstore.stream_version(conn, "tx-1") == 2
        await eventstore.append(conn, "tx-1", "s", 2, [ev(3)])
        await conn.commit()
        assert not conn.in_transaction()
        assert await eventstore.stream_version(conn, "tx-1") == 3
    async with engine.begin() as conn:
        stored = await eventstore.read_stream(conn, "tx-1")
    assert [e.version for e in stored] == [1, 2, 3]
    assert [e.payload for e in stored] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert len({e.commit_order for e in stored[:2]}) == 1 and stored[2].commit_order > stored[0].commit_order


async def test_concurrent_writers_one_wins_the_other_gets_a_conflict(platform_db):
    engine, _ = platform_db
    async with engine.begin() as conn:
        await eventstore.append(conn, "race", "s", 0, [ev(0)])
    barrier = asyncio.Event()

    async def writer(n: int):
        async with engine.begin() as conn:
            version = await eventstore.stream_version(conn, "race")
            await barrier.wait()  # both decided on version 1
            await eventstore.append(conn, "race", "s", version, [ev(n)])

    tasks = [asyncio.create_task(writer(n)) for n in (1, 2)]
    await asyncio.sleep(0.2)
    barrier.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert sum(isinstance(r, ConcurrencyError) for r in results) == 1
    async with engine.connect() as conn:
        assert [e.version for e in await eventstore.read_stream(conn, "race")] == [1, 2]


async def test_tailing_reader_never_skips_an_event_that_commits_late(platform_db):
    """Many transactions take their positions in one order and commit in another (random
    delays inside each); a reader tailing all the while must see every event exactly once,
    each stream in version order."""
    engine, _ = platform_db
    rng = random.Random(7)
    writers, events_per_writer, streams = 60, 4, 6
    commit_order: list[int] = []
    done = asyncio.Event()

    async def writer(w: int):
        stream = f"stream-{w % streams}"
        for attempt in range(50):
            try:
                async with engine.begin() as conn:
                    await asyncio.sleep(rng.random() * 0.02)
                    version = await eventstore.stream_version(conn, stream)
                    await eventstore.append(conn, stream, "t", version, [ev(w * 100 + i) for i in range(events_per_writer)])
                    position = (await conn.execute(text("SELECT max(global_position) FROM events WHERE stream_id = :s"),
                                                   {"s": stream})).scalar()
                    await asyncio.sleep(rng.random() * 0.08)  # commit later than others that started after
                commit_order.append(position)
                return
            except ConcurrencyError:
                await asyncio.sleep(rng.random() * 0.01)
        raise AssertionError("writer never got through")

    seen: list[eventstore.StoredEvent] = []

    async def reader():
        position = eventstore.START
        while True:
            finished = done.is_set()
            async with engine.connect() as conn:
                batch = await eventstore.read_all(conn, position, limit=7)
            seen.extend(batch)
            if batch:
                position = batch[-1].position
            elif finished:
                return
            else:
                await asyncio.sleep(0.001)

    reader_task = asyncio.create_task(reader())
    await asyncio.gather(*[writer(w) for w in range(writers)])
    done.set()
    await reader_task

    # The hazard really happened: some transaction committed after one with a higher position.
    inversions = sum(1 for a, b in zip(commit_order, commit_order[1:]) if a > b)
    assert inversions > 0
    payloads = [e.payload["n"] for e in seen]
    assert len(payloads) == writers * events_per_writer
    assert len(set(payloads)) == len(payloads), "an event was read twice"
    async with engine.connect() as conn:
        total = (await conn.execute(text("SELECT count(*) FROM events"))).scalar()
    assert total == len(payloads), "the reader skipped events"
    for stream in {e.stream_id for e in seen}:
        versions = [e.version for e in seen if e.stream_id == stream]
        assert versions == sorted(versions) == list(range(1, len(versions) + 1))


async def test_a_transaction_open_in_another_database_does_not_hold_back_the_reader(platform_db):
    """Transaction ids are the cluster's: a write transaction running in another database (a
    bank import in another context's database on the same server) must not keep this
    database's committed events from its readers; one running in this database, started before
    them, must (it may yet write events ordered before them)."""
    import asyncpg

    engine, url = platform_db
    async with fresh_database("otherdb") as other_name:
        other = await asyncpg.connect(asyncpg_dsn(other_name))
        ours = await asyncpg.connect(asyncpg_dsn(url.rsplit("/", 1)[1]))
        try:
            await other.execute("CREATE TABLE t (v int)")
            other_tx = other.transaction()
            await other_tx.start()
            await other.execute("INSERT INTO t VALUES (1)")  # an id assigned, running
            async with engine.begin() as conn:
                await eventstore.append(conn, "x-1", "s", 0, [ev(1)])
            async with engine.connect() as conn:
                assert [e.stream_id for e in await eventstore.read_all(conn)] == ["x-1"]
                assert [e.stream_id for e in await eventstore.read_outbox(conn)] == ["x-1"]
            # Now one of this database's own: started (an id taken) before the next append.
            ours_tx = ours.transaction()
            await ours_tx.start()
            await ours.execute("INSERT INTO event_checkpoints (name, transaction_id, global_position)"
                               " VALUES ('held', '1', 0)")
            async with engine.begin() as conn:
                await eventstore.append(conn, "x-2", "s", 0, [ev(2)])
            async with engine.connect() as conn:
                assert [e.stream_id for e in await eventstore.read_all(conn)] == ["x-1"]
            await ours_tx.rollback()
            async with engine.connect() as conn:
                assert [e.stream_id for e in await eventstore.read_all(conn)] == ["x-1", "x-2"]
            await other_tx.rollback()
        finally:
            await other.close()
            await ours.close()


async def test_checkpoint_round_trip(platform_db):
    engine, _ = platform_db
    async with engine.begin() as conn:
        await eventstore.append(conn, "c", "s", 0, [ev(1)])
    async with engine.begin() as conn:
        [event] = await eventstore.read_all(conn)
        await eventstore.save_checkpoint(conn, "relay:test", event.position)
    async with engine.connect() as conn:
        assert await eventstore.load_checkpoint(conn, "relay:test") == event.position
        assert await eventstore.read_all(conn, event.position) == []


async def test_a_lost_race_leaves_nothing_of_the_loser_and_its_transaction_usable(platform_db):
    """Two writers decided on version 1; the loser's 3 events would take versions 2-4 and the
    winner (committed after the loser's snapshot was taken) took 2 only: the loser gets
    ConcurrencyError, none of its events stay (not even versions 3-4, which did not collide),
    and its transaction goes on (a 409 answer, an idempotency row) and commits."""
    engine, _ = platform_db
    async with engine.begin() as conn:
        await eventstore.append(conn, "lost", "s", 0, [ev(0)])
        await conn.execute(text("CREATE TABLE after_conflict (n int)"))
    winner_inserted = asyncio.Event()
    release = asyncio.Event()

    async def winner():
        async with engine.begin() as conn:
            await eventstore.append(conn, "lost", "s", 1, [ev(1)])
            winner_inserted.set()
            await release.wait()

    async def loser():
        await winner_inserted.wait()
        async with engine.begin() as conn:
            # Blocks on the winner's uncommitted version 2, then finds it committed.
            with pytest.raises(ConcurrencyError):
                await eventstore.append(conn, "lost", "s", 1, [ev(10), ev(11), ev(12)])
            await conn.execute(text("INSERT INTO after_conflict VALUES (1)"))

    tasks = [asyncio.create_task(winner()), asyncio.create_task(loser())]
    await asyncio.sleep(0.3)
    release.set()
    await asyncio.gather(*tasks)
    async with engine.connect() as conn:
        events = await eventstore.read_stream(conn, "lost")
        assert [(e.version, e.payload["n"]) for e in events] == [(1, 0), (2, 1)]
        assert (await conn.execute(text("SELECT count(*) FROM after_conflict"))).scalar() == 1
    async with engine.begin() as conn:  # and the stream goes on from there
        assert await eventstore.append(conn, "lost", "s", 2, [ev(3)]) == 3


async def test_new_streams_are_appended_in_one_batch_or_not_at_all(platform_db):
    import uuid

    from shared.eventstore import append_new_streams, read_stream

    engine, _ = platform_db

    def batch(n: int) -> list[NewEvent]:
        return [NewEvent(event_type="Noted", schema_version=1, payload={"n": i}, occurred_at=NOW) for i in range(n)]

    prefix = f"batch-{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await append_new_streams(conn, [(f"{prefix}-a", "note", batch(2)), (f"{prefix}-b", "note", batch(3))])
    async with engine.connect() as conn:
        assert [e.version for e in await read_stream(conn, f"{prefix}-a")] == [1, 2]
        assert [e.payload["n"] for e in await read_stream(conn, f"{prefix}-b")] == [0, 1, 2]
    # One stream of the batch exists already: nothing of the batch is appended.
    async with engine.begin() as conn:
        with pytest.raises(ConcurrencyError):
            await append_new_streams(conn, [(f"{prefix}-c", "note", batch(1)), (f"{prefix}-a", "note", batch(1))])
        assert await read_stream(conn, f"{prefix}-c") == []  # and the transaction is still usable


async def test_a_stream_is_read_in_version_order_whatever_order_its_writers_got_their_ids(platform_db):
    """Issue 13: T_A gets its transaction id first (an idempotency-key insert), T_B then appends
    v2 to P and commits, T_A appends v3 and commits. Ordering by transaction id read v3 before v2
    (this test failed on the old read_all); commit_order keeps the stream's versions in order."""
    engine, _ = platform_db
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE keys (k text PRIMARY KEY)"))
        await eventstore.append(conn, "P", "payment", 0, [ev(1)])
    async with engine.connect() as t_a, engine.connect() as t_b:
        await t_a.begin()
        await t_a.execute(text("INSERT INTO keys VALUES ('key-of-A')"))  # T_A's id is assigned now
        xid_a = (await t_a.execute(text("SELECT pg_current_xact_id()::text::bigint"))).scalar()
        await t_b.begin()
        await t_b.execute(text("INSERT INTO keys VALUES ('key-of-B')"))
        xid_b = (await t_b.execute(text("SELECT pg_current_xact_id()::text::bigint"))).scalar()
        assert xid_a < xid_b
        assert await eventstore.append(t_b, "P", "payment", 1, [ev(2)]) == 2
        await t_b.commit()
        assert await eventstore.append(t_a, "P", "payment", 2, [ev(3)]) == 3
        await t_a.commit()
    async with engine.connect() as conn:
        events = await eventstore.read_all(conn)
        assert [e.version for e in events] == [1, 2, 3]
        # A reader that had read up to v2 before v3 committed goes on with v3, and nothing else.
        assert [e.version for e in await eventstore.read_all(conn, events[1].position)] == [3]


async def test_interleaved_writers_on_shared_streams_are_read_in_version_order(platform_db):
    """Many writers, each taking its transaction id early and then appending to a few of a small
    set of streams with retries on conflict: read_all returns every stream in version order and
    a reader tailing concurrently never sees a version before its predecessor."""
    engine, _ = platform_db
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE keys (k text PRIMARY KEY)"))
    streams = [f"s{i}" for i in range(4)]
    seen: dict[str, list[int]] = {s: [] for s in streams}
    done = asyncio.Event()

    async def writer(w: int) -> None:
        rng = random.Random(w)
        for n in range(15):
            while True:
                try:
                    async with engine.begin() as conn:
                        await conn.execute(text("INSERT INTO keys VALUES (:k)"), {"k": f"{w}-{n}-{rng.random()}"})
                        await asyncio.sleep(rng.random() * 0.01)
                        stream = rng.choice(streams)
                        version = await eventstore.stream_version(conn, stream)
                        await asyncio.sleep(rng.random() * 0.01)
                        await eventstore.append(conn, stream, "s", version, [ev(n), ev(n)])
                    break
                except ConcurrencyError:
                    continue

    async def tail() -> None:
        position = eventstore.START
        while True:
            finished = done.is_set()
            async with engine.connect() as conn:
                for e in await eventstore.read_all(conn, position, 50):
                    seen[e.stream_id].append(e.version)
                    position = e.position
            if finished:
                return
            await asyncio.sleep(0.005)

    tailing = asyncio.create_task(tail())
    await asyncio.gather(*(writer(w) for w in range(8)))
    done.set()
    await tailing
    for stream, versions in seen.items():
        assert versions == list(range(1, len(versions) + 1)), stream
    assert sum(len(v) for v in seen.values()) == 8 * 15 * 2


async def test_the_relays_read_is_read_all_shaped_for_publishing(platform_db):
    """read_outbox (the relay's read) takes the same commit-safe window in the same order as
    read_all, hands the payload over as the stored JSON text, and keeps only the metadata that
    travels in message headers; an open transaction's rows appear in neither."""
    engine, _ = platform_db
    payloads = [{"amount": "1234.50", "name": "Société Générale — 東京", "lines": [{"qty": 3, "tax": "0.125"}]},
                {"nested": {"empty": [], "null": None, "flag": True, "big": 12345678901234567890}},
                {"n": 3}]
    metadata = [{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "actor": "user:ana",
                 "correlation_id": "corr-1", "causation_id": "cause-1", "idempotency_key": "not a header"},
                {"actor": "system:dunning"}, {}]
    async with engine.begin() as conn:
        for i, (p, m) in enumerate(zip(payloads, metadata)):
            await eventstore.append(conn, f"o-{i}", "s", 0, [NewEvent("Tested", 2, p, NOW, m)])
    async with engine.connect() as held:  # an uncommitted append must stay out of both reads
        await eventstore.append(held, "o-late", "s", 0, [ev(99)])
        async with engine.connect() as conn:
            stored = await eventstore.read_all(conn, limit=10)
            outbox = await eventstore.read_outbox(conn, limit=10)
            assert [e.position for e in outbox] == [e.position for e in stored] and len(stored) == 3
            assert await eventstore.read_outbox(conn, outbox[0].position, limit=1) == [outbox[1]]
        await held.rollback()
    for s, o in zip(stored, outbox):
        assert (o.event_id, o.event_type, o.stream_id, o.stream_type, o.version, o.schema_version) == (
            str(s.event_id), s.event_type, s.stream_id, s.stream_type, s.version, s.schema_version)
        assert (o.occurred_at, o.recorded_at) == (s.occurred_at, s.recorded_at)
        assert json.loads(o.payload_json) == s.payload
    assert [json.loads(o.payload_json) for o in outbox] == payloads
    assert outbox[0].metadata == {k: v for k, v in metadata[0].items() if k != "idempotency_key"}
    assert outbox[1].metadata == {"actor": "system:dunning"} and outbox[2].metadata == {}
