"""Builds the reporting service: its report routes, the consumer of all four contexts' topics,
the rebuild command and its migrations, on the shared shell. Reporting publishes nothing."""
from __future__ import annotations

import argparse

from shared.clock import SystemClock
from shared.contracts.base import with_topic_prefix
from shared.service import ConsumerSpec, Runtime, ServiceDefinition, build_app
from services.reporting.api.period_routes import router as period_router
from services.reporting.api.routes import dashboard_router, router
from services.reporting.api.rollup_routes import router as rollup_router
from services.reporting.api.statement_routes import router as statement_router
from services.reporting.application.rebuild import rebuild, rebuild_from_topics
from services.reporting.projections.facts import CONSUMER_NAME, TOPICS, project
from services.reporting.settings import ReportingSettings

REBUILD_HELP = ("rebuild the read model from the topics in one transaction, set-based, with a progress bar "
                "(stop the reporting workers first); --clear-only lets the consumer replay from offset 0 instead")


def _rebuild_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="skip asking Kafka whether the reporting consumer group still has members")
    parser.add_argument("--clear-only", action="store_true",
                        help="only drop the facts and the consumer's inbox and offsets; the workers replay")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


CONSUMER = ConsumerSpec(CONSUMER_NAME, TOPICS, project)


async def _run_rebuild(runtime: Runtime, args: argparse.Namespace) -> int:
    await runtime.migrate()  # a rebuild may be the first thing run against a new database
    settings = runtime.settings
    if args.clear_only:
        return await rebuild(runtime.engine, settings.kafka_bootstrap_servers, CONSUMER.group(settings),
                             force=args.force)
    topics = [with_topic_prefix(t, settings.topic_prefix) for t in CONSUMER.topics]
    return await rebuild_from_topics(runtime.engine, settings.kafka_bootstrap_servers, CONSUMER.group(settings),
                                     topics, force=args.force, progress=not args.no_progress)


def definition(settings: ReportingSettings | None = None) -> ServiceDefinition:
    return ServiceDefinition(
        context="reporting",
        title="Ledgerline reporting",
        settings=settings or ReportingSettings(),
        migrations_package="services.reporting.adapters.migrations",
        routers=[rollup_router, statement_router, router, period_router, dashboard_router],
        publishes=False,
        consumers=[CONSUMER],
        commands={"rebuild": (REBUILD_HELP, _rebuild_arguments, _run_rebuild)},
        state={"clock": SystemClock()},
    )


def create_app():
    return build_app(definition())
