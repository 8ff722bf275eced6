from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from shared.money import Amount
from shared.problem_http import install_problem_handlers
from shared.problems import Conflict


def _app():
    app = FastAPI()
    install_problem_handlers(app)

    class Body(BaseModel):
        amount: Amount

    @app.post("/things")
    def create(body: Body):
        return {"ok": True}

    @app.get("/conflict")
    def conflict():
        raise Conflict("already there", field="thing_id")

    return app


def test_validation_errors_are_problem_json_naming_the_field():
    r = TestClient(_app()).post("/things", json={"amount": 1.5})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"].endswith("/validation-error")
    assert body["errors"][0]["field"] == "amount"
    assert "string" in body["errors"][0]["reason"]


def test_domain_problem_and_unknown_route():
    client = TestClient(_app())
    r = client.get("/conflict")
    assert r.status_code == 409 and r.json()["errors"] == [{"field": "thing_id", "reason": "already there"}]
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
