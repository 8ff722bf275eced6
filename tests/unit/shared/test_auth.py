import json

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from shared.auth import install_auth, key_hash, parse_api_keys
from shared.problem_http import install_problem_handlers

KEYS = json.dumps({
    key_hash("erp-secret"): {"actor": "erp-sap", "scopes": ["invoicing:read", "invoicing:write"]},
    key_hash("viewer-secret"): {"actor": "dashboard", "scopes": ["invoicing:read"]},
    key_hash("admin-secret"): {"actor": "ops", "scopes": ["*"]},
})


def _client(keys: str | None, allow_open: bool = False) -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)
    install_auth(app, "invoicing", keys, allow_open=allow_open)

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


def test_without_keys_the_service_refuses_unless_open_mode_is_asked_for(caplog):
    from shared.auth import OpenModeNotRequested

    with pytest.raises(OpenModeNotRequested, match="LEDGERLINE_INVOICING_ALLOW_OPEN=true"):
        _client(None)
    with pytest.raises(OpenModeNotRequested):
        _client("", allow_open=False)
    _client(None, allow_open=True)
    assert "OPEN MODE" in caplog.text
    # keys win over open mode: asking for it changes nothing when keys are configured
    assert _client(KEYS, allow_open=True).get("/v1/invoices").status_code == 401


def test_in_open_mode_the_api_takes_the_actor_header():
    client = _client(None, allow_open=True)
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


def test_keys_can_come_from_a_mounted_secret_file(tmp_path, monkeypatch):
    from shared.settings import ServiceSettings

    monkeypatch.delenv("LEDGERLINE_OPEN_MODE", raising=False)
    secret = tmp_path / "api-keys"
    secret.write_text(KEYS)
    settings = ServiceSettings(database_url="postgresql+asyncpg://x@127.0.0.1:1/x", api_keys_file=str(secret))
    assert parse_api_keys(settings.resolved_api_keys()) == parse_api_keys(KEYS)
    assert not settings.open_mode_requested()
    # a Secret that is not mounted stops the service instead of opening it
    with pytest.raises(FileNotFoundError):
        ServiceSettings(database_url="x", api_keys_file=str(tmp_path / "missing")).resolved_api_keys()
    monkeypatch.setenv("LEDGERLINE_OPEN_MODE", "true")
    assert ServiceSettings(database_url="x").open_mode_requested()


def test_a_delegate_key_names_the_person_in_x_actor_and_no_other_key_can():
    keys = json.dumps({
        key_hash("workbench-secret"): {"actor": "workbench", "scopes": ["invoicing:*", "delegate"]},
        key_hash("admin-secret"): {"actor": "ops", "scopes": ["*"]},
    })
    client = _client(keys)
    bench = {"Authorization": "Bearer workbench-secret"}
    assert client.post("/v1/invoices", headers={**bench, "X-Actor": "alice"}).json() == {"actor": "alice"}
    assert client.get("/v1/invoices", headers=bench).json() == {"actor": "workbench"}  # no header: the key acts
    # '*' does not imply delegate: an admin key cannot put words in someone's mouth.
    assert client.post("/v1/invoices", headers={"Authorization": "Bearer admin-secret", "X-Actor": "alice"}).json() \
        == {"actor": "ops"}
    for bad in ("", "   ", "x" * 65, "bob\tadmin"):
        refused = client.post("/v1/invoices", headers={**bench, "X-Actor": bad})
        assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "X-Actor", bad
