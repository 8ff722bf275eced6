"""Builds the invoicing service: its routers, consumers and migrations on the shared shell."""
from __future__ import annotations

from shared.clock import SystemClock
from shared.contracts import topic_for
from shared.service import ConsumerSpec, PeriodicTask, ServiceDefinition, build_app
from services.invoicing.api.adjustment_routes import router as adjustment_router
from services.invoicing.api.customer_profile_routes import router as profile_router
from services.invoicing.api.bulk_routes import router as bulk_router
from services.invoicing.api.hierarchy_routes import router as hierarchy_router
from services.invoicing.api.delivery_routes import router as delivery_router
from services.invoicing.api.document_routes import router as document_router
from services.invoicing.application.documents import deliver_pending_documents, statement_source_of
from services.invoicing.application.statements import run_due_statements
from services.invoicing.api.statement_routes import router as statement_router
from services.invoicing.api.routes import router
from services.invoicing.application.handlers import on_external_event
from services.invoicing.settings import InvoicingSettings


def definition(settings: InvoicingSettings | None = None) -> ServiceDefinition:
    return ServiceDefinition(
        context="invoicing",
        title="Ledgerline invoicing",
        settings=settings or InvoicingSettings(),
        migrations_package="services.invoicing.adapters.migrations",
        routers=[router, adjustment_router, profile_router, bulk_router, hierarchy_router, document_router,
                 delivery_router, statement_router],
        consumers=[ConsumerSpec("invoicing", [topic_for("cash_application"), topic_for("disputes"), topic_for("collections")], on_external_event)],
        state={"clock": SystemClock()},
        # Invoices and credit memos to email go out shortly after the transaction that issued them.
        # Monthly statement runs are queued once a month is over, then delivered the same way.
        periodic=[PeriodicTask("deliver-documents", lambda s: s.document_delivery_interval_seconds,
                               lambda runtime: deliver_pending_documents(runtime.engine, runtime.settings,
                                                                         statements=statement_source_of(runtime))),
                  PeriodicTask("statement-runs", lambda s: s.statement_run_interval_seconds,
                               lambda runtime: run_due_statements(
                                   runtime.engine, runtime.definition.state["clock"].today()))],
    )


def create_app():
    return build_app(definition())
