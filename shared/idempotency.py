"""Idempotency-Key for creating POSTs.

The key row is inserted in the same transaction as the command's events. A retry with the same
key and body returns the first response and appends nothing; a concurrent twin blocks on the
key's unique index until the first commits, then reads its response. The same key with a
different body is rejected (422). A failed command rolls back its key, so a corrected retry
may reuse it."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Awaitable, Callable

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.problems import Problem

MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(Problem):
    status = 422
    type_name = "idempotency-key-reused"
    title = "Idempotency-Key was used with a different request"


def idempotency_key_header(
    idempotency_key: str | None = Header(
        default=None,
        alias="Idempotency-Key",
        description="Unique key per intended operation; a retry with the same key returns the first response.",
    ),
) -> str:
    if idempotency_key is None or not idempotency_key.strip():
        raise Problem(
            "creating requests need an Idempotency-Key header (a UUID per intended operation)",
            field="Idempotency-Key",
            type_name="idempotency-key-missing",
            title="Idempotency-Key header is required",
        )
    if len(idempotency_key) > MAX_KEY_LENGTH:
        raise Problem(
            f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters",
            field="Idempotency-Key",
            type_name="idempotency-key-invalid",
            title="Idempotency-Key is not valid",
        )
    return idempotency_key.strip()


def request_fingerprint(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def run_idempotent(
    engine: AsyncEngine,
    scope: str,
    key: str,
    body: Any,
    command: Callable[[AsyncConnection], Awaitable[tuple[int, Any]]],
) -> tuple[int, Any, bool]:
    """Run command(conn) once per (scope, key). Returns (status, body, replayed)."""
    fingerprint = request_fingerprint(body)
    async with engine.begin() as conn:
        inserted = (
            await conn.execute(
                text(
                    "INSERT INTO idempotency_keys (scope, key, request_hash) VALUES (:s, :k, :h)"
                    " ON CONFLICT (scope, key) DO NOTHING RETURNING 1"
                ),
                {"s": scope, "k": key, "h": fingerprint},
            )
        ).first()
        if inserted is None:
            row = (
                await conn.execute(
                    text(
                        "SELECT request_hash, response_status, response_body FROM idempotency_keys"
                        " WHERE scope = :s AND key = :k"
                    ),
                    {"s": scope, "k": key},
                )
            ).one()
            if row.request_hash != fingerprint:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was already used with a different request body",
                    field="Idempotency-Key",
                )
            stored = row.response_body
            if isinstance(stored, str):
                stored = json.loads(stored)
            return row.response_status, stored, True
        status, response = await command(conn)
        await conn.execute(
            text(
                "UPDATE idempotency_keys SET response_status = :st, response_body = CAST(:b AS jsonb)"
                " WHERE scope = :s AND key = :k"
            ),
            {"st": status, "b": json.dumps(response, default=str), "s": scope, "k": key},
        )
        return status, response, False


async def idempotent_create(
    request: Request,
    key: str,
    body: Any,
    command: Callable[[AsyncConnection], Awaitable[Any]],
    *,
    status_code: int = 201,
) -> JSONResponse:
    """Route helper: run a creating command once per Idempotency-Key and answer JSON.
    `command` returns the JSON-ready response body; a replay answers the stored one with the
    header Idempotent-Replayed: true."""

    engine = request.app.state.runtime.engine
    scope = f"{request.method} {request.scope.get('route').path if request.scope.get('route') else request.url.path}"

    async def run(conn: AsyncConnection) -> tuple[int, Any]:
        return status_code, await command(conn)

    status, response, replayed = await run_idempotent(engine, scope, key, body, run)
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return JSONResponse(response, status_code=status, headers=headers)
