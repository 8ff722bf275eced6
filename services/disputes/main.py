"""Builds the disputes service: its routers, consumer and migrations on the shared shell."""
from __future__ import annotations

from shared.clock import Clock, SystemClock
from shared.contracts import topic_for
from shared.service import ConsumerSpec, PeriodicTask, ServiceDefinition, build_app
from services.disputes.api.deduction_routes import router as deduction_router
from services.disputes.api.routes import router
from services.disputes.api.workflow_routes import router as workflow_router
from services.disputes.application.deductions import scheduled_escalation
from services.disputes.application.handlers import on_external_event
from services.disputes.settings import DisputesSettings


def definition(settings: DisputesSettings | None = None, clock: Clock | None = None) -> ServiceDefinition:
    clock = clock or SystemClock()
    return ServiceDefinition(
        context="disputes",
        title="Ledgerline disputes",
        settings=settings or DisputesSettings(),
        migrations_package="services.disputes.adapters.migrations",
        routers=[router, deduction_router, workflow_router],
        consumers=[ConsumerSpec("disputes", [topic_for("cash_application"), topic_for("invoicing")],
                                on_external_event)],
        state={"clock": clock},
        # Overdue disputes escalate without anyone asking (once per due date; see deductions).
        periodic=[PeriodicTask("escalate-overdue-disputes", lambda s: s.escalation_interval_seconds,
                               lambda runtime: scheduled_escalation(runtime.engine, clock.today()))],
    )


def create_app():
    return build_app(definition())
