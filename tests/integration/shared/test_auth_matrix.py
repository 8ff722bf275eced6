"""Closed by default, everywhere: with API keys configured, every route of every service answers
401 without a key and 403 with a key that lacks the route's scope, as problem+json. The routes
come from each app's own router (so a route added later is covered without touching this test);
only the health, readiness, metrics and API-description paths stay open, and that list is
asserted too. Each app runs in-process with its lifespan on a fresh real database."""
from __future__ import annotations

import json
import re

import pytest
from starlette.routing import Mount, Route

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
from shared.auth import OPEN_PATHS, key_hash
from tests.support.infra import service_client

SERVICES = {
    "invoicing": (invoicing, InvoicingSettings),
    "cash_application": (cash_application, CashApplicationSettings),
    "collections": (collections, CollectionsSettings),
    "disputes": (disputes, DisputesSettings),
    "reporting": (reporting, ReportingSettings),
}
# A key that is valid but holds only another context's scopes: authenticated, never authorised.
OUTSIDER = "outsider-key"
KEYS = json.dumps({key_hash(OUTSIDER): {"actor": "outsider", "scopes": ["elsewhere:read", "elsewhere:write"]}})
EXPECTED_OPEN = {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/v1/openapi.json"}


def _walk(routes, prefix: str = ""):
    """(method, path) of every HTTP route, through included routers and mounts (FastAPI keeps an
    included router as one entry holding the original router)."""
    for route in routes:
        if isinstance(route, Route):
            for method in sorted(route.methods or ()):
                yield method, prefix + route.path
        elif hasattr(route, "original_router"):
            yield from _walk(route.original_router.routes, prefix + route.include_context.prefix)
        elif isinstance(route, Mount):
            yield from _walk(route.routes, prefix + route.path)


def _concrete(path: str) -> str:
    """/v1/invoices/{invoice_id}/lines -> /v1/invoices/x1/lines (any value: auth runs first)."""
    return re.sub(r"\{[^}]+\}", "x1", path)


def _is_problem(response, status: int) -> bool:
    return (response.status_code == status and response.headers["content-type"].startswith("application/problem+json")
            and response.json()["status"] == status)


def test_only_probes_metrics_and_api_description_are_open():
    assert OPEN_PATHS == EXPECTED_OPEN


@pytest.mark.parametrize("context", list(SERVICES))
async def test_every_route_needs_a_key_and_its_scope(context):
    make, settings_class = SERVICES[context]
    async with service_client(lambda url: make(settings_class(database_url=url, api_keys=KEYS))) as (client, app):
        every = set(_walk(app.routes))
        assert {path for _, path in every} >= {"/healthz", "/readyz", "/metrics"}
        routes = sorted((method, path) for method, path in every if path not in OPEN_PATHS and method != "HEAD")
        # the OpenAPI document's operations are all among them (and hidden routes like the dashboard too)
        documented = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops if p not in OPEN_PATHS}
        assert documented <= set(routes), documented - set(routes)
        assert len(routes) >= 3, routes

        failures = []
        for method, path in routes:
            url = _concrete(path)
            anonymous = await client.request(method, url, json={})
            if not _is_problem(anonymous, 401) or anonymous.json()["errors"][0]["field"] != "Authorization":
                failures.append(f"{method} {path} without a key: {anonymous.status_code} {anonymous.text[:120]}")
            wrong = await client.request(method, url, json={}, headers={"Authorization": "Bearer not-a-key"})
            if not _is_problem(wrong, 401):
                failures.append(f"{method} {path} with an unknown key: {wrong.status_code}")
            outsider = await client.request(method, url, json={}, headers={"Authorization": f"Bearer {OUTSIDER}"})
            expected_scope = f"{context}:{'read' if method in ('GET', 'HEAD') else 'write'}"
            if not _is_problem(outsider, 403) or outsider.json().get("required_scope") != expected_scope:
                failures.append(f"{method} {path} with a key lacking {expected_scope}: {outsider.status_code} "
                                f"{outsider.text[:120]}")
        assert not failures, "\n".join(failures)
        # the open paths stay open for probes and scrapers
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        print(f"{context}: {len(routes)} routes x (no key -> 401, unknown key -> 401, key without scope -> 403)")


@pytest.mark.parametrize("context", list(SERVICES))
def test_without_keys_a_service_refuses_to_start_unless_open_mode_is_asked_for(context, monkeypatch):
    from shared.auth import OpenModeNotRequested
    from shared.service import build_app

    monkeypatch.delenv("LEDGERLINE_OPEN_MODE", raising=False)
    make, settings_class = SERVICES[context]
    url = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
    with pytest.raises(OpenModeNotRequested, match="ALLOW_OPEN=true"):
        build_app(make(settings_class(database_url=url)))
    build_app(make(settings_class(database_url=url, allow_open=True)))
    monkeypatch.setenv("LEDGERLINE_OPEN_MODE", "true")
    build_app(make(settings_class(database_url=url)))
