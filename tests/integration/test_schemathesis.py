"""Schemathesis against all five services' OpenAPI, each app in process (ASGI, lifespan run) on
a fresh real PostgreSQL database: generated requests, valid and invalid, never answer a 5xx,
and every answer conforms to the documented content types and response schemas. A bounded
number of examples per operation keeps the whole run to a few minutes on two cores; then a
stateful run per service follows the links the schemas declare."""
from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from services.cash_application.main import definition as cash_application
from services.cash_application.settings import CashApplicationSettings
from services.collections.main import definition as collections
from services.collections.settings import CollectionsSettings
from services.disputes.main import definition as disputes
from services.disputes.settings import DisputesSettings
from services.invoicing.main import definition as invoicing
from services.invoicing.settings import InvoicingSettings
from services.reporting.main import definition as reporting
from services.reporting.settings import ReportingSettings
from shared.service import build_app
from tests.support.infra import asyncpg_dsn, sqlalchemy_url

SERVICES = {
    "invoicing": lambda url: invoicing(InvoicingSettings(database_url=url, role="api", allow_open=True)),
    "cash_application": lambda url: cash_application(
        CashApplicationSettings(database_url=url, role="api", allow_open=True)),
    "collections": lambda url: collections(CollectionsSettings(database_url=url, role="api", allow_open=True,
                                                               smtp_port=1)),
    "disputes": lambda url: disputes(DisputesSettings(database_url=url, role="api", allow_open=True)),
    "reporting": lambda url: reporting(ReportingSettings(database_url=url, role="api", allow_open=True)),
}
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = int(os.environ.get("LEDGERLINE_SCHEMATHESIS_EXAMPLES", "6"))
STATEFUL_SEQUENCES = 8
STATEFUL_STEPS = 6
BOUNDED = settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                   phases=[Phase.explicit, Phase.generate],
                   suppress_health_check=list(HealthCheck))


async def _database(action: str, name: str) -> None:
    admin = await asyncpg.connect(asyncpg_dsn("postgres"))
    try:
        await admin.execute(f'{action} DATABASE "{name}"' + (" WITH (FORCE)" if action == "DROP" else ""))
    finally:
        await admin.close()


def _operations(schema):
    for result in schema.get_all_operations():
        yield result.ok()


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_no_input_yields_a_5xx_and_answers_conform(service):
    """Every operation of the service, EXAMPLES_PER_OPERATION generated cases each (creating
    POSTs get a fresh Idempotency-Key when the case has none); all failures are reported."""
    name = f"ll_st_{service}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_database("CREATE", name))
    failures: list[str] = []
    try:
        app = build_app(SERVICES[service](sqlalchemy_url(name)))
        schema = schemathesis.openapi.from_asgi("/v1/openapi.json", app)
        operations = list(_operations(schema))
        assert operations, "no operations in the schema"
        for operation in operations:
            @given(case=operation.as_strategy())
            @BOUNDED
            def run(case):
                headers = {} if (case.headers or {}).get("Idempotency-Key") else {"Idempotency-Key": str(uuid.uuid4())}
                case.call_and_validate(checks=CHECKS, headers=headers)

            try:
                run()
            except BaseException as exc:  # reported together below
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                failures.append(f"{operation.label}: {str(exc)[:1500]}")
        failures.extend(_stateful(schema))
    finally:
        from schemathesis.python import asgi

        asgi.shutdown_lifespans()
        asyncio.run(_database("DROP", name))
    assert not failures, "\n\n".join(failures)


def _stateful(schema) -> list[str]:
    """Sequences of calls that feed one answer's values into the next request (the links
    schemathesis finds or infers in the schema), with the same checks."""

    machine = schema.as_state_machine()
    if not schema.statistic.transitions.total:
        return []  # no links to follow (reporting only reads: nothing creates what another call uses)

    class Calls(machine):
        def get_call_kwargs(self, case):
            has_key = (case.headers or {}).get("Idempotency-Key")
            return {} if has_key else {"headers": {"Idempotency-Key": str(uuid.uuid4())}}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None)

    try:
        Calls.run(settings=settings(max_examples=STATEFUL_SEQUENCES, stateful_step_count=STATEFUL_STEPS,
                                    deadline=None, derandomize=True, database=None,
                                    suppress_health_check=list(HealthCheck)))
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return [f"stateful: {str(exc)[:3000]}"]
    return []
