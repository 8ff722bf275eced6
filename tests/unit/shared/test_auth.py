import json

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from shared.auth import install_auth, key_hash, parse_api_keys
from shared.problems import install_problem_handlers

KEYS = json.dumps({
    key_hash("erp-secret"): {"actor": "erp-sap", "scopes": ["invoicing:read", "invoicing:write"]},
    key_hash("viewer-secret"): {"actor": "dashboard", "scopes": ["invoicing:read"]},
    key_hash("admin-secret"): {"actor": "ops", "scopes": ["*"]},
})


def _client(keys: str | None) -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)
    install_auth(app, "invoicing", keys)

    @app.get("/v1/invoices")
    def read(request: Request):
        return {"actor": request.state.actor}

    @app.post("/v1/invoices")
    def write(request: Request):
        return {"actor": request.state.actor}

    @app.get("/healthz")
    def health():
        return {"status": "ok"}

    return TestClient(app)


def test_keys_and_scopes_are_enforced_and_name_the_actor():
    client = _client(KEYS)
    assert client.get("/healthz").status_code == 200  # probes need no key
    missing = client.get("/v1/invoices")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.json()["errors"][0]["field"] == "Authorization"
    assert client.get("/v1/invoices", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.post("/v1/invoices", headers={"Authorization": "Bearer erp-secret"})
    assert ok.status_code == 200 and ok.json() == {"actor": "erp-sap"}
    assert client.get("/v1/invoices", headers={"Authorization": "Bearer viewer-secret"}).json() == {"actor": "dashboard"}
    denied = client.post("/v1/invoices", headers={"Authorization": "Bearer viewer-secret"})
    assert denied.status_code == 403 and denied.json()["required_scope"] == "invoicing:write"
    assert client.post("/v1/invoices", headers={"Authorization": "Bearer admin-secret"}).status_code == 200


def test_without_keys_the_api_is_open_and_takes_the_actor_header():
    client = _client(None)
    assert client.post("/v1/invoices", headers={"X-Actor": "alice"}).json() == {"actor": "alice"}
    assert client.get("/v1/invoices").json() == {"actor": "anonymous"}


def test_configuration_holds_hashes_only():
    with pytest.raises(ValueError):
        parse_api_keys(json.dumps({"plain-key": {"actor": "x", "scopes": ["*"]}}))
    with pytest.raises(ValueError):
        parse_api_keys("not json")


def test_openapi_declares_the_bearer_scheme_and_each_operations_scope():
    client = _client(KEYS)
    schema = client.app.openapi()
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert schema["paths"]["/v1/invoices"]["get"]["x-required-scopes"] == ["invoicing:read"]
    assert schema["paths"]["/v1/invoices"]["post"]["x-required-scopes"] == ["invoicing:write"]
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_admin_scopes_are_never_implied_by_a_context_wildcard():
    from shared.auth import Principal

    writer = Principal(actor="mia", scopes=frozenset({"collections:*"}))
    assert writer.may("collections:write") and writer.may("collections:read")
    assert not writer.may("collections:admin")
    assert Principal(actor="ops", scopes=frozenset({"collections:admin"})).may("collections:admin")
    assert Principal(actor="root", scopes=frozenset({"*"})).may("collections:admin")
