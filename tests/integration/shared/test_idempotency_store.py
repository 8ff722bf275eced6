"""shared.idempotency against PostgreSQL: a key runs its command once and answers the same after;
answers are stored as the text sent (migration 0005), and answers stored before it (jsonb, in
response_body) still replay."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from shared.idempotency import EncodedJSON, IdempotencyKeyReused, request_fingerprint, run_idempotent


async def test_a_key_runs_its_command_once_and_replays_the_text_it_answered(platform_db):
    engine, _ = platform_db
    calls = []

    async def command(conn):
        calls.append(1)
        return 201, EncodedJSON('{"id":"x-1","amount":"10.50","note":"caf\\u00e9 \\"q\\""}')

    first = await run_idempotent(engine, "caller:open", "k-1", {"body": 1}, command)
    again = await run_idempotent(engine, "caller:open", "k-1", {"body": 1}, command)
    assert len(calls) == 1
    assert first == (201, '{"id":"x-1","amount":"10.50","note":"caf\\u00e9 \\"q\\""}', False)
    assert again == (201, {"id": "x-1", "amount": "10.50", "note": 'café "q"'}, True)
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT response_text, response_body FROM idempotency_keys"
                                       " WHERE key = 'k-1'"))).one()
    assert row.response_text == first[1] and row.response_body is None
    with pytest.raises(IdempotencyKeyReused):
        await run_idempotent(engine, "caller:open", "k-1", {"body": 2}, command)


async def test_an_answer_stored_before_the_text_column_still_replays(platform_db):
    engine, _ = platform_db
    body = {"invoice_id": "inv-1", "total": "99.99"}
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO idempotency_keys (scope, key, request_hash, response_status, response_body)"
            " VALUES ('caller:open', 'old', :h, 201, CAST(:b AS jsonb))"),
            {"h": request_fingerprint({"body": 1}),
             "b": json.dumps(body)})

    async def command(conn):
        raise AssertionError("a stored answer is replayed, not run again")

    assert await run_idempotent(engine, "caller:open", "old", {"body": 1}, command) == (201, body, True)
