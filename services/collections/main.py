"""Builds the collections service: its routers, consumer, commands and migrations on the
shared shell."""
from __future__ import annotations

import argparse
import json
import sys
from datetime import date

from shared.clock import Clock, SystemClock
from shared.contracts import topic_for
from shared.problems import Problem
from shared.service import ConsumerSpec, PeriodicTask, Runtime, ServiceDefinition, build_app
from services.collections.api.dunning_routes import router as dunning_router
from services.collections.api.routes import router
from services.collections.api.schemas import evaluation_out
from services.collections.application import dunning
from services.collections.application.handlers import evaluate_promises, on_external_event
from services.collections.settings import CollectionsSettings


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as-of", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                        help="judge promises as of this day (default: today)")


async def _evaluate_command(runtime: Runtime, args: argparse.Namespace) -> int:
    """python -m services.collections evaluate-promises [--as-of DATE]: prints the outcome as JSON."""
    if runtime.settings.migrate_on_start:
        await runtime.migrate()
    today = runtime.definition.state["clock"].today()
    meta = {"actor": "cli:evaluate-promises", "correlation_id": f"evaluate-promises:{args.as_of or today}"}
    try:
        async with runtime.engine.begin() as conn:
            evaluation = await evaluate_promises(conn, args.as_of, today, meta)
    except Problem as exc:
        print(json.dumps(exc.body()), file=sys.stderr)
        return 2
    print(json.dumps(evaluation_out(evaluation), indent=2))
    return 0


def _daily_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as-of", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                        help="run as of this day (default: today)")
    parser.add_argument("--no-send", action="store_true", help="record notices but leave the emails pending")


async def _daily_run_command(runtime: Runtime, args: argparse.Namespace) -> int:
    """python -m services.collections daily-run [--as-of DATE]: prints what the run did as JSON."""
    if runtime.settings.migrate_on_start:
        await runtime.migrate()
    clock = runtime.definition.state["clock"]
    as_of = args.as_of or clock.today()
    if as_of > clock.today():
        print(json.dumps({"detail": f"as_of {as_of} is after today ({clock.today()})", "field": "as_of"}),
              file=sys.stderr)
        return 2
    meta = {"actor": "cli:daily-run", "correlation_id": f"daily-run:{as_of}"}
    result = await dunning.daily_run(runtime.engine, as_of=as_of,
                                     run_at=dunning.run_instant(as_of, clock.now(), runtime.settings),
                                     settings=runtime.settings, meta=meta)
    out = result.as_json()
    if not args.no_send:
        out["deliveries"] = await dunning.deliver_pending_emails(runtime.engine, runtime.settings)
    print(json.dumps(out, indent=2))
    return 0


async def _deliver_pending(runtime: Runtime) -> None:
    await dunning.deliver_pending_emails(runtime.engine, runtime.settings)


def definition(settings: CollectionsSettings | None = None, clock: Clock | None = None) -> ServiceDefinition:
    return ServiceDefinition(
        context="collections",
        title="Ledgerline collections",
        settings=settings or CollectionsSettings(),
        migrations_package="services.collections.adapters.migrations",
        routers=[router, dunning_router],
        consumers=[ConsumerSpec("collections", [topic_for("invoicing"), topic_for("cash_application"),
                                                topic_for("disputes")], on_external_event)],
        commands={"evaluate-promises": ("judge open promises to pay as of a day: kept, broken or still open",
                                        _evaluate_arguments, _evaluate_command),
                  "daily-run": ("the dunning run as of a day: promises, plans, risk, holds and every step due, once",
                                _daily_run_arguments, _daily_run_command)},
        state={"clock": clock or SystemClock()},
        # Emails left pending by an SMTP outage go out without waiting for the next daily run.
        periodic=[PeriodicTask("deliver-pending-emails", lambda s: s.email_retry_interval_seconds,
                               _deliver_pending)],
    )


def create_app():
    return build_app(definition())
