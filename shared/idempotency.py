"""Idempotency-Key for creating POSTs.

A key belongs to its caller: the API key's actor when keys are configured, one namespace for
all callers when the service runs open. It stands for one request: the method, the concrete
path (ids included), the query and the body. The key row is inserted in the same transaction as
the command's events. A retry of the same request with the same key returns the first response
and appends nothing; a concurrent twin blocks on the key's unique index until the first
commits, then reads its response. The same key on any other request (another resource, say
approving WO-2 with WO-1's key, or another body) is rejected (422), never answered with the
first request's response. A failed command rolls back its key, so a corrected retry may reuse
it."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Awaitable, Callable

from fastapi import Header, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db import driver_connection
from shared.problems import Problem

MAX_KEY_LENGTH = 255


class EncodedJSON(str):
    """A response body the command has already encoded as JSON text (a large one, encoded in a
    worker thread so the event loop keeps answering): stored and answered as it is, not encoded
    again. A replay answers it decoded, like any stored body."""


class IdempotencyKeyReused(Problem):
    status = 422
    type_name = "idempotency-key-reused"
    title = "Idempotency-Key was used with a different request"


async def idempotency_key_header(
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
# (async: FastAPI runs a plain `def` dependency in its thread pool, a thread hand-off per request
# that the write path's profile showed.)


def request_fingerprint(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


OPEN_CALLER = "open"


def caller_scope(request: Request) -> str:
    """The namespace of a request's keys: its API key's actor (set by shared.auth); with no keys
    configured every caller shares one (the X-Actor header is not proof of anyone)."""
    principal = getattr(request.state, "principal", None)
    actor = getattr(principal, "actor", None)
    return f"caller:{actor}" if actor else f"caller:{OPEN_CALLER}"


def request_identity(request: Request, body: Any) -> dict[str, Any]:
    """What a key stands for: method, concrete path (ids included), query and body."""
    return {
        "method": request.method,
        "path": request.url.path,
        "query": sorted(request.query_params.multi_items()),
        "body": body,
    }


async def run_idempotent(
    engine: AsyncEngine,
    scope: str,
    key: str,
    body: Any,
    command: Callable[[AsyncConnection], Awaitable[tuple[int, Any]]],
) -> tuple[int, Any, bool]:
    """Run command(conn) once per (scope, key); `body` is everything the key stands for (see
    request_identity). Returns (status, body, replayed)."""
    fingerprint = request_fingerprint(body)
    async with engine.begin() as conn:
        # The key's statements go to the driver directly (shared.db.driver_connection): every
        # creating POST of every service runs them.
        driver = await driver_connection(conn)
        inserted = await driver.fetchval(_CLAIM, scope, key, fingerprint)
        if inserted is None:
            row = await driver.fetchrow(_STORED, scope, key)
            if row["request_hash"] != fingerprint:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was already used for a different request (another method, "
                    "resource or body); use a new key for each intended operation",
                    field="Idempotency-Key",
                )
            stored = row["response_text"] if row["response_text"] is not None else row["response_body"]
            if isinstance(stored, str):
                stored = json.loads(stored)
            return row["response_status"], stored, True
        status, response = await command(conn)
        await driver.execute(
            _ANSWER, status,
            response if isinstance(response, EncodedJSON) else json.dumps(response, default=str), scope, key)
        return status, response, False


_CLAIM = ("INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)"
          " ON CONFLICT (scope, key) DO NOTHING RETURNING 1")
_STORED = ("SELECT request_hash, response_status, response_text, response_body FROM idempotency_keys"
           " WHERE scope = $1 AND key = $2")
# The answer as the text sent (migration 0005: converting it to jsonb cost more than storing it);
# answers stored before it stay in response_body.
_ANSWER = ("UPDATE idempotency_keys SET response_status = $1, response_text = $2"
           " WHERE scope = $3 AND key = $4")


async def idempotent_request(
    request: Request,
    key: str,
    body: Any,
    command: Callable[[AsyncConnection], Awaitable[tuple[int, Any]]],
) -> tuple[int, Any, bool]:
    """run_idempotent for an HTTP request: the key in the caller's namespace, standing for this
    method, path, query and `body` (the parsed body, or a digest of a raw one)."""
    return await run_idempotent(request.app.state.runtime.engine, caller_scope(request), key,
                                request_identity(request, body), command)


async def idempotent_create(
    request: Request,
    key: str,
    body: Any,
    command: Callable[[AsyncConnection], Awaitable[Any]],
    *,
    status_code: int = 201,
) -> Response:
    """Route helper: run a creating command once per Idempotency-Key and answer JSON.
    `command` returns the JSON-ready response body; a replay answers the stored one with the
    header Idempotent-Replayed: true."""

    async def run(conn: AsyncConnection) -> tuple[int, Any]:
        # Encoded once: the same text is stored with the key and answered (JSONResponse would
        # encode the body a second time; for a batch of 5,000 invoices that was a tenth of its CPU).
        return status_code, EncodedJSON(json.dumps(await command(conn), default=str, ensure_ascii=False,
                                                   separators=(",", ":")))

    status, response, replayed = await idempotent_request(request, key, body, run)
    if isinstance(response, EncodedJSON):
        return Response(response.encode(), status_code=status, media_type="application/json")
    return JSONResponse(response, status_code=status, headers={"Idempotent-Replayed": "true"})
