"""Builds the cash_application service: its routers, consumers and migrations on the shared shell."""
from __future__ import annotations

from shared.clock import SystemClock
from shared.contracts import topic_for
from shared.service import ConsumerSpec, ServiceDefinition, build_app
from services.cash_application.api.card_payout_routes import router as card_payout_router
from services.cash_application.api.refund_routes import router as refund_router
from services.cash_application.api.routes import router
from services.cash_application.application.chunked_imports import start_worker_processes, stop_worker_processes
from services.cash_application.projections.open_items import on_collections_event, on_invoicing_event
from services.cash_application.cli import COMMANDS
from services.cash_application.settings import CashApplicationSettings


def definition(settings: CashApplicationSettings | None = None) -> ServiceDefinition:
    return ServiceDefinition(
        context="cash_application",
        title="Ledgerline cash application",
        settings=settings or CashApplicationSettings(),
        migrations_package="services.cash_application.adapters.migrations",
        routers=[router, refund_router, card_payout_router],
        publishes=True,
        consumers=[ConsumerSpec("cash_application", [topic_for("invoicing")], on_invoicing_event),
                   ConsumerSpec("cash_application.collections", [topic_for("collections")], on_collections_event)],
        commands=COMMANDS,
        state={"clock": SystemClock()},
        on_stop=[stop_worker_processes],
        on_serve=[start_worker_processes],
    )


def create_app():
    return build_app(definition())
