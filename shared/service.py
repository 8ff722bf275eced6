"""The process shell every service shares: engine, outbox relay, consumers, the FastAPI app with
health, readiness, metrics, tracing and problem details, and the CLI (serve, migrate, relay,
worker, plus a service's own commands). A service supplies only its routers, handlers and
migrations."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.auth import OpenModeNotRequested, install_auth
from shared.consumer import ConsumerRunner, Handler
from shared.contracts import registry
from shared.contracts.base import topic_for, with_topic_prefix
from shared import heap
from shared.logthrottle import Throttle, throttle_library_logs
from shared.db import apply_migrations, make_engine, sql_files
from shared.db_errors import DatabaseFailure
from shared.db_errors import classify as classify_database_failure
from shared.input_guard import NUL, nul_in_body, nul_in_pairs
from shared.problems import (
    Conflict,
    InternalError,
    Problem,
    ServiceUnavailable,
    ValidationFailed,
)
from shared.problem_http import install_problem_handlers, problem_response
from shared.relay import OutboxRelay
from shared.settings import ServiceSettings
from shared.telemetry import current_traceparent, setup_tracing, tracer

log = logging.getLogger(__name__)

REQUESTS = Counter("ledgerline_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram("ledgerline_http_request_seconds", "HTTP request latency", ["service", "method", "route"])


@dataclass
class ConsumerSpec:
    name: str
    topics: Sequence[str]
    handler: Handler

    def group(self, settings: ServiceSettings) -> str:
        """The consumer group and inbox name the runner uses: <topic_prefix>.<name>."""
        return f"{settings.topic_prefix}.{self.name}"


@dataclass
class PeriodicTask:
    """Work a worker process repeats in the background (e.g. retrying deliveries). `run` must be
    safe to repeat and to run in several processes at once; a failure is logged and retried at the
    next interval. Interval: a number of seconds, or a function of the settings returning it."""

    name: str
    interval: float | Callable[[ServiceSettings], float]
    run: Callable[["Runtime"], Awaitable[Any]]

    def seconds(self, settings: ServiceSettings) -> float:
        return float(self.interval(settings) if callable(self.interval) else self.interval)


@dataclass
class ServiceDefinition:
    context: str
    title: str
    settings: ServiceSettings
    migrations_package: str
    routers: Sequence[APIRouter] = ()
    publishes: bool = True
    consumers: Sequence[ConsumerSpec] = ()
    # extra CLI commands: name -> (help, add_arguments, async run(runtime, args))
    commands: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[["Runtime", argparse.Namespace], Awaitable[int]]]] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # service-specific objects (clock, ...)
    periodic: Sequence[PeriodicTask] = ()  # run by worker processes (role worker or all)
    # run when the process stops, after its workers: what the service started of its own (its
    # worker processes) ends with it, in order
    on_stop: Sequence[Callable[[], Awaitable[None]]] = ()
    # run with the settings once a serving process (`serve`; not an app a test builds) has
    # started: what it should have ready before its first request asks for it (worker processes)
    on_serve: Sequence[Callable[[Any], Awaitable[None]]] = ()


class Runtime:
    """What a running process of one service holds."""

    def __init__(self, definition: ServiceDefinition) -> None:
        self.definition = definition
        self.settings = definition.settings
        self.engine: AsyncEngine = make_engine(
            self.settings.database_url, pool_size=self.settings.db_pool_size,
            max_overflow=self.settings.db_pool_overflow,
            idle_in_transaction_timeout=self.settings.db_idle_in_transaction_timeout_seconds,
            application_name=f"ledgerline-{definition.context}")
        # The relay's and the consumers' own pool, made by start_workers. Sharing the requests'
        # pool, they starved under load: asyncio's queue behind SQLAlchemy's pool lets a running
        # request take a returned connection before the waiter it woke, which then queues again
        # at the back, so at 200 requests/s the relay waited 10-20 s between batches (its
        # checkpoint measured every 2 s) and every read model's lag grew with the load.
        self.worker_engine: AsyncEngine | None = None
        self.relay: OutboxRelay | None = None
        self.consumers: list[ConsumerRunner] = []
        self._migration_names = [name for name, _ in self.migrations()]
        self._tasks: list[asyncio.Task] = []
        self._stopping: asyncio.Event | None = None
        self.periodic_errors: dict[str, str] = {}
        self._throttle = Throttle(log)

    def migrations(self) -> list[tuple[str, str]]:
        # Names are namespaced so a context's 0001 never collides with the platform's 0001.
        files = [(f"platform/{name}", sql) for name, sql in sql_files("shared.migrations", ".")]
        files += [(f"{self.definition.context}/{name}", sql) for name, sql in sql_files(self.definition.migrations_package, ".")]
        return files

    async def migrate(self) -> list[str]:
        return await apply_migrations(self.engine, self.migrations())

    def start_workers(self) -> None:
        prefix = self.settings.topic_prefix
        if self.worker_engine is None and (self.definition.publishes or self.definition.consumers):
            # A connection per consumer and two for the relay (its batch and the next one read
            # ahead); overflow for a dead letter's bookkeeping beside a batch.
            self.worker_engine = make_engine(
                self.settings.database_url, pool_size=len(self.definition.consumers) + 2, max_overflow=2,
                idle_in_transaction_timeout=self.settings.db_idle_in_transaction_timeout_seconds,
                application_name=f"ledgerline-{self.definition.context}-workers")
        if self.definition.publishes:
            self.relay = OutboxRelay(self.worker_engine, self.settings.kafka_bootstrap_servers, self.definition.context,
                                     topic=topic_for(self.definition.context, prefix),
                                     lease_seconds=self.settings.relay_lease_seconds,
                                     max_backlog_seconds=self.settings.relay_max_backlog_seconds)
            self._tasks.append(asyncio.create_task(self.relay.run(), name="relay"))
        for spec in self.definition.consumers:
            runner = ConsumerRunner(
                self.worker_engine,
                self.settings.kafka_bootstrap_servers,
                spec.group(self.settings),
                [with_topic_prefix(t, prefix) for t in spec.topics],
                spec.handler,
                max_attempts=self.settings.consumer_max_attempts,
                contracts=registry,
                max_lag=self.settings.consumer_max_lag,
            )
            self.consumers.append(runner)
            self._tasks.append(asyncio.create_task(runner.run(), name=f"consumer:{spec.name}"))
        self._stopping = asyncio.Event()
        for task in self.definition.periodic:
            self._tasks.append(asyncio.create_task(self._repeat(task), name=f"periodic:{task.name}"))

    async def _repeat(self, task: PeriodicTask) -> None:
        interval = task.seconds(self.settings)
        while not self._stopping.is_set():
            try:
                await task.run(self)
                self.periodic_errors.pop(task.name, None)
                self._throttle.reset(task.name)
            except Exception as exc:  # logged (once per interval) and reported in /readyz; retried
                self._throttle.error(task.name, "periodic task %s failed: %r", task.name, exc)
                self.periodic_errors[task.name] = f"{type(exc).__name__}: {exc}"[:300]
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)
            except asyncio.TimeoutError:
                pass

    async def stop_workers(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self.relay:
            self.relay.stop()
        for runner in self.consumers:
            runner.stop()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=15)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        ok = True
        try:
            async with self.engine.connect() as conn:
                has_table = (await conn.execute(text("SELECT to_regclass('schema_migrations') IS NOT NULL"))).scalar()
                applied = set((await conn.execute(text("SELECT name FROM schema_migrations"))).scalars()) if has_table else set()
            checks["database"] = "ok"
            # A pod whose schema is behind its code (migrations Job not run yet) is not ready.
            pending = [name for name in self._migration_names if name not in applied]
            if pending:
                checks["migrations"] = {"pending": pending}
                ok = False
        except Exception as exc:  # reported, not raised: this is the probe
            checks["database"] = f"unreachable: {exc.__class__.__name__}"
            ok = False
        if self.settings.role in ("all", "worker"):
            if self.relay is not None:
                alive = any(t.get_name() == "relay" and not t.done() for t in self._tasks)
                relay_ok, checks["relay"] = await self.relay.status(alive)
                ok = ok and relay_ok
            for runner in self.consumers:
                consumer_ok, checks[f"consumer:{runner.name}"] = runner.status()
                ok = ok and consumer_ok
            for task in self.definition.periodic:
                # A failing periodic task (SMTP down, say) is reported, not made unready: the
                # API and the event flow still work.
                checks[f"periodic:{task.name}"] = {"last_error": self.periodic_errors.get(task.name)}
        return ok, checks

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.worker_engine is not None:
            await self.worker_engine.dispose()


def request_metadata(request: Request) -> dict[str, Any]:
    """Event metadata for a command: who, which request, and the trace it belongs to."""
    correlation = request.headers.get("X-Correlation-ID") or request.headers.get("X-Request-ID") or str(uuid.uuid4())
    meta: dict[str, Any] = {
        "correlation_id": correlation,
        "actor": getattr(request.state, "actor", None) or "anonymous",
    }
    traceparent = current_traceparent()
    if traceparent:
        meta["traceparent"] = traceparent
    return meta


UNTYPED_BODY_CHECK_BYTES = 1_000_000


def _is_json(request: Request) -> bool:
    """JSON bodies are read here (the route reads them whole anyway); a file upload (a bank file)
    is not, so a route can stream it and refuse it past its size limit before it is all read."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media:
        return media == "application/json" or media.endswith("+json")
    # FastAPI reads a body without a content type as JSON; a streamed upload declares no length.
    declared = request.headers.get("content-length", "")
    return declared.isdigit() and int(declared) <= UNTYPED_BODY_CHECK_BYTES


async def refuse_nul_characters(request: Request) -> Response | None:
    """A NUL character in the path, query, headers or JSON body is a 422 naming where, before any
    route sees it (PostgreSQL cannot store it; nothing else should fail on it). Other bodies are
    the route's to check (bank files refuse a NUL byte with its line)."""
    if NUL in request.scope.get("path", ""):
        field, where = "path", "the path"
    elif (field := nul_in_pairs(request.query_params.multi_items())) is not None:
        where = "the query"
    elif (field := nul_in_pairs(request.headers.items())) is not None:
        where = "a header"
    elif (request.method in ("POST", "PUT", "PATCH") and _is_json(request)
          and (field := nul_in_body(await request.body())) is not None):
        where = "the body"
    else:
        return None
    return problem_response(ValidationFailed(f"{field}: a NUL character (\\u0000) in {where} is not allowed",
                                             extra={"errors": [{"field": field,
                                                                "reason": "contains a NUL character (\\u0000)"}]}),
                            request)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "required": ["field", "reason"], "properties": {
            "field": {"type": "string"}, "reason": {"type": "string"}}}},
    },
}


def document_problems(app: FastAPI) -> None:
    """Publish what the API answers on errors: every operation's 422 and any other error status
    (the `default` response) are application/problem+json (RFC 9457), not FastAPI's
    HTTPValidationError."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                responses["422"] = {"description": "The request is not valid (problem details naming the field)",
                                    "content": problem}
                responses.setdefault("default", {"description": "An error (problem details); 503 when the "
                                                 "database is out of reach, with Retry-After", "content": problem})
        for name in ("HTTPValidationError", "ValidationError"):
            schema["components"]["schemas"].pop(name, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def unhandled_problem(exc: Exception, request: Request) -> Problem:
    """The problem an exception no route handled stands for: the database out of reach is a 503
    (retry later), a value that does not fit a column a 422, a constraint a 409; anything else
    is a bug, logged with its traceback and answered as a problem+json 500."""
    failure = classify_database_failure(exc)
    if failure is DatabaseFailure.UNAVAILABLE:
        log.warning("%s %s: database unavailable: %s", request.method, request.url.path, exc.__class__.__name__)
        return ServiceUnavailable("the database is not reachable right now; nothing was done, retry later")
    if failure is DatabaseFailure.INVALID_DATA:
        log.warning("%s %s: a value was refused by the database: %s", request.method, request.url.path, exc)
        return ValidationFailed("a value in the request does not fit what can be stored")
    if failure is DatabaseFailure.CONFLICT:
        log.warning("%s %s: a constraint refused the change: %s", request.method, request.url.path, exc)
        return Conflict("the change conflicts with the stored state (maybe a concurrent request); retry")
    log.exception("%s %s: unhandled error", request.method, request.url.path)
    return InternalError("an unexpected error occurred; it was logged")


class _Observe:
    """The server span (continuing the caller's traceparent), the NUL guard, problem+json for
    whatever escaped the routes, and the Prometheus request metrics. Pure ASGI middleware: the
    @app.middleware("http") form (BaseHTTPMiddleware) ran each request through an extra task
    group and memory streams, which the write path's profile showed."""

    def __init__(self, app, context: str, http_tracer) -> None:
        self.app = app
        self.context = context
        self.http_tracer = http_tracer
        self.propagator = TraceContextTextMapPropagator()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        ctx = self.propagator.extract(dict(request.headers))
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_observed(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
            await send(message)

        with self.http_tracer.start_as_current_span(f"{request.method} {request.url.path}", context=ctx,
                                                    kind=SpanKind.SERVER) as span:
            refused = await refuse_nul_characters(request)
            if refused is not None:
                await refused(scope, receive, send_observed)
            else:
                body = getattr(request, "_body", None)
                if body is not None:  # the guard read it: hand the same bytes to the route
                    replayed = {"done": False}

                    async def receive_again():
                        if not replayed["done"]:
                            replayed["done"] = True
                            return {"type": "http.request", "body": body, "more_body": False}
                        return await receive()
                    downstream_receive = receive_again
                else:
                    downstream_receive = receive
                try:
                    await self.app(scope, downstream_receive, send_observed)
                except Exception as exc:  # whatever escaped the routes' handlers: never text/plain
                    if status["sent"]:
                        raise
                    await problem_response(unhandled_problem(exc, request), request)(scope, receive, send_observed)
            # Label by route template, not the raw path: ids in paths would explode the series.
            matched = scope.get("route")
            route = getattr(matched, "path", "unmatched")
            span.update_name(f"{request.method} {route}")
            span.set_attribute("http.response.status_code", status["code"])
        LATENCY.labels(self.context, request.method, route).observe(time.perf_counter() - started)
        REQUESTS.labels(self.context, request.method, route, status["code"]).inc()


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def build_app(definition: ServiceDefinition, *, freeze_heap: bool = False) -> FastAPI:
    """The service's app. freeze_heap (the serving process): once started, everything alive (the
    app, engine, settings, imported modules) is frozen out of the garbage collector's full
    collections (shared.heap), which otherwise walk it again every few thousand requests. An
    app built in a test process leaves that process's collector alone."""
    settings = definition.settings
    setup_tracing(f"ledgerline-{definition.context}")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runtime = Runtime(definition)
        app.state.runtime = runtime
        if settings.migrate_on_start:
            await runtime.migrate()
        if settings.role in ("all", "worker"):
            runtime.start_workers()
        if freeze_heap:
            for start in definition.on_serve:
                try:
                    await start(settings)
                except Exception:  # what it readies is then made on first use
                    log.exception("%s: a serve hook failed", definition.context)
            heap.freeze_long_lived()
        try:
            yield
        finally:
            await runtime.stop_workers()
            for stop in definition.on_stop:
                try:
                    await stop()
                except Exception:  # the others still run, and the engine is still disposed
                    log.exception("%s: a stop hook failed", definition.context)
            await runtime.dispose()

    # FastAPI's own OpenTelemetry instrumentation is off: the `observe` middleware below makes
    # the server span (with the caller's traceparent) and the Prometheus metrics; FastAPI's
    # made a second server span, an operation span, metrics and logs for every request
    # (profiled on the write path; docs/benchmarks.md).
    app = FastAPI(title=definition.title, version="1.0.0", lifespan=lifespan,
                  openapi_url="/v1/openapi.json", docs_url="/docs",
                  telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False})
    install_problem_handlers(app)
    install_auth(app, definition.context, settings.resolved_api_keys(), allow_open=settings.open_mode_requested())
    document_problems(app)
    http_tracer = tracer(f"ledgerline.{definition.context}.http")

    app.add_middleware(_Observe, context=definition.context, http_tracer=http_tracer)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        ok, checks = await request.app.state.runtime.readiness()
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in definition.routers:
        app.include_router(router)
    return app


async def _run_workers(definition: ServiceDefinition, relay_only: bool = False) -> None:
    runtime = Runtime(definition)
    if definition.settings.migrate_on_start:
        await runtime.migrate()
    if relay_only:
        definition = ServiceDefinition(**{**definition.__dict__, "consumers": (), "periodic": ()})
        runtime.definition = definition
    runtime.start_workers()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runtime.stop_workers()
    await runtime.dispose()


async def _dead_letters(definition: ServiceDefinition, args: argparse.Namespace) -> int:
    import json

    from shared import dead_letters

    runtime = Runtime(definition)
    try:
        if not args.replay:
            rows = await dead_letters.parked(runtime.engine, include_replayed=args.all)
            print(json.dumps(rows, indent=2, default=str))
            return 0
        handlers = {spec.group(definition.settings): spec.handler for spec in definition.consumers}
        status = 0
        for dead_letter_id in args.replay:
            try:
                print(json.dumps(await dead_letters.replay(runtime.engine, dead_letter_id, handlers)))
            except Exception as exc:  # report each and go on; nothing of a failed one changed
                print(json.dumps({"id": dead_letter_id, "replayed": False, "error": repr(exc)}))
                status = 1
        return status
    finally:
        await runtime.dispose()


def cli(definition_factory: Callable[[], ServiceDefinition], argv: list[str] | None = None) -> int:
    definition = definition_factory()
    settings = definition.settings
    parser = argparse.ArgumentParser(prog=f"python -m services.{definition.context}", description=definition.title)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="HTTP API (and, with role=all, the relay and consumers)")
    sub.add_parser("migrate", help="apply database migrations and exit")
    sub.add_parser("worker", help="relay and consumers only, no HTTP")
    sub.add_parser("relay", help="outbox relay only")
    dead = sub.add_parser("dead-letters", help="list parked events; --replay ID re-runs one after its cause is fixed")
    dead.add_argument("--replay", type=int, action="append", default=[], metavar="ID")
    dead.add_argument("--all", action="store_true", help="include replayed dead letters")
    for name, (help_text, add_args, _) in definition.commands.items():
        add_args(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    throttle_library_logs()  # a broker outage: aiokafka's reconnect errors once per interval, with a count

    if args.command == "serve":
        import uvicorn

        try:
            app = build_app(definition, freeze_heap=True)
        except OpenModeNotRequested as exc:
            log.critical("%s", exc)
            return 2
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                    access_log=False, lifespan="on",
                    timeout_graceful_shutdown=settings.shutdown_grace_seconds)
        return 0
    if args.command == "migrate":
        async def _migrate() -> None:
            runtime = Runtime(definition)
            try:
                applied = await runtime.migrate()
                print(f"{definition.context}: applied {len(applied)} migration(s) {applied}")
            finally:
                await runtime.dispose()
        asyncio.run(_migrate())
        return 0
    if args.command == "dead-letters":
        return asyncio.run(_dead_letters(definition, args))
    if args.command in ("worker", "relay"):
        asyncio.run(_run_workers(definition, relay_only=args.command == "relay"))
        return 0
    _, _, run = definition.commands[args.command]

    async def _command() -> int:
        runtime = Runtime(definition)
        try:
            return await run(runtime, args)
        finally:
            await runtime.dispose()
    return asyncio.run(_command())
