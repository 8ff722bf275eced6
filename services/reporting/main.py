"""Builds the reporting service: its report routes, the consumer of all four contexts' topics,
the rebuild command and its migrations, on the shared shell. Reporting publishes nothing."""
from __future__ import annotations

import argparse

from shared.clock import SystemClock
from shared.service import ConsumerSpec, Runtime, ServiceDefinition, build_app
from services.reporting.api.period_routes import router as period_router
from services.reporting.api.routes import router
from services.reporting.application.rebuild import rebuild
from services.reporting.projections.facts import CONSUMER_NAME, TOPICS, project
from services.reporting.settings import ReportingSettings

REBUILD_HELP = ("drop the read-model facts and the consumer's inbox and offsets, so the consumer replays "
                "every topic from offset 0 (stop the reporting workers first)")


def _rebuild_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="skip asking Kafka whether the reporting consumer group still has members")


CONSUMER = ConsumerSpec(CONSUMER_NAME, TOPICS, project)


async def _run_rebuild(runtime: Runtime, args: argparse.Namespace) -> int:
    await runtime.migrate()  # a rebuild may be the first thing run against a new database
    return await rebuild(runtime.engine, runtime.settings.kafka_bootstrap_servers, CONSUMER.group(runtime.settings),
                         force=args.force)


def definition(settings: ReportingSettings | None = None) -> ServiceDefinition:
    return ServiceDefinition(
        context="reporting",
        title="Ledgerline reporting",
        settings=settings or ReportingSettings(),
        migrations_package="services.reporting.adapters.migrations",
        routers=[router, period_router],
        publishes=False,
        consumers=[CONSUMER],
        commands={"rebuild": (REBUILD_HELP, _rebuild_arguments, _run_rebuild)},
        state={"clock": SystemClock()},
    )


def create_app():
    return build_app(definition())
