"""Set-based rebuild of the read model straight from the topics: read every partition from
its beginning to the end offsets taken at the start (read_committed), turn each event into
its fact rows with the consumer's own mapping (projections.facts.facts_of), and write them in
large batches: COPY into a temporary staging table, then one INSERT ... SELECT ... ON CONFLICT
DO NOTHING per table, so the natural keys absorb duplicates exactly as the one-by-one handler
does. Everything happens in the caller's transaction, which also stores the end offsets as
the consumer's positions: readers keep seeing the old model until the commit, and the worker
carries on from exactly where the load stopped."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.consumer import PoisonMessage, decode

FactRows = Callable[[Any], list[tuple[str, dict[str, Any]]]]
FLUSH_ROWS = 50_000


class _Staged:
    """Fact rows buffered per table, flushed through COPY + INSERT ... SELECT."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.count = 0
        self.staging: set[str] = set()

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.rows[table].append(row)
        self.count += 1

    async def flush(self) -> None:
        raw = (await self.conn.get_raw_connection()).driver_connection
        for table, rows in self.rows.items():
            if not rows:
                continue
            columns = list(rows[0])
            stage = f"_stage_{table}"
            if stage not in self.staging:
                await self.conn.execute(text(f"CREATE TEMP TABLE {stage} (LIKE {table}) ON COMMIT DROP"))
                self.staging.add(stage)
            await raw.copy_records_to_table(stage, records=[tuple(r.get(c) for c in columns) for r in rows],
                                            columns=columns)
            names = ", ".join(columns)
            await self.conn.execute(text(f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage}"
                                         " ON CONFLICT DO NOTHING"))
            await self.conn.execute(text(f"TRUNCATE {stage}"))
        self.rows.clear()
        self.count = 0


async def _partitions(bootstrap: str, consumer: str, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of the topics that exist (a topic nobody has published to yet has none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{consumer}-rebuild-admin")
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described if t["error_code"] == 0
            for p in sorted(t["partitions"], key=lambda p: p["partition"])]


async def load_topics(conn: AsyncConnection, bootstrap: str, consumer: str, topics: Sequence[str],
                      facts_of: FactRows, progress: Callable[[int, int], None] = lambda done, total: None,
                      timeout_ms: int = 1000) -> dict[str, int]:
    """Load every event of `topics` up to their current end into the fact tables, and store
    the end offsets as `consumer`'s positions. Undecodable messages are skipped (the consumer
    would park them). progress(events_read_now, total) is called per fetched batch. Returns
    counts: events, facts, skipped."""
    partitions = await _partitions(bootstrap, consumer, topics)
    counts = {"events": 0, "facts": 0, "skipped": 0}
    if not partitions:
        return counts
    kafka = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed", client_id=f"{consumer}-rebuild",
                             auto_offset_reset="earliest",
                             max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await kafka.start()
    try:
        kafka.assign(partitions)
        begin = await kafka.beginning_offsets(partitions)
        end = await kafka.end_offsets(partitions)
        total = sum(end[tp] - begin[tp] for tp in partitions)
        todo = {tp for tp in partitions if end[tp] > begin[tp]}
        for tp in partitions:
            kafka.seek(tp, begin[tp])  # an explicit position: no race with a reset policy
        staged = _Staged(conn)
        next_offset: dict[TopicPartition, int] = {}
        idle: dict[TopicPartition, int] = {}
        while todo:
            batches = await kafka.getmany(*todo, timeout_ms=timeout_ms, max_records=20_000)
            read = 0
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= end[tp]:
                        break
                    next_offset[tp] = record.offset + 1
                    read += 1
                    try:
                        event = decode(record)
                    except PoisonMessage:
                        counts["skipped"] += 1
                        continue
                    for table, row in facts_of(event):
                        staged.add(table, row)
                        counts["facts"] += 1
            for tp in list(todo):
                # Done once the record at end - 1 was read; or, when the last offsets are
                # transaction markers (no record), once the fetch position is past the end and
                # three rounds in a row brought nothing more.
                if next_offset.get(tp, 0) >= end[tp]:
                    todo.discard(tp)
                elif tp not in batches and await kafka.position(tp) >= end[tp]:
                    idle[tp] = idle.get(tp, 0) + 1
                    if idle[tp] >= 3:
                        todo.discard(tp)
            counts["events"] += read
            progress(read, total)
            if staged.count >= FLUSH_ROWS or not todo:
                await staged.flush()
        await staged.flush()
        for tp in partitions:
            await conn.execute(text(
                "INSERT INTO consumer_offsets (consumer, topic, partition, next_offset) VALUES (:c, :t, :p, :o)"
                " ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset,"
                " updated_at = now()"), {"c": consumer, "t": tp.topic, "p": tp.partition, "o": end[tp]})
        return counts
    finally:
        await kafka.stop()
