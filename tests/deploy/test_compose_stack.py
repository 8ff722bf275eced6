"""The platform as an ops engineer runs it with Docker Compose: the service image built from the
Dockerfile (scripts/images.sh), the whole stack up with `compose up --wait` (PostgreSQL, Kafka,
topics, migrations, the five services, the OpenTelemetry Collector, an SMTP sink), the README's
example flow through the published ports with API keys from the compose secret, one trace from
invoicing's HTTP request through Kafka into reporting's consumer in the collector, then
`down -v`. Needs Docker (scripts/images.sh starts a daemon when none runs): `make test-platform`
runs it, `make test` does not (marker `platform`).

Where no image registry answers, scripts/images.sh builds local stand-ins for the official
postgres, apache/kafka and otel/opentelemetry-collector images and the overrides point at them.
Only 127.0.0.1 port mappings are used; the project gets its own name, network and volumes."""
from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from shared.auth import key_hash
from tests.deploy.support import CONTEXTS, REPO, run_tool
from tests.support.platform import free_port

pytestmark = pytest.mark.platform

SERVICE_KEYS = {c: f"LEDGERLINE_COMPOSE_{c.upper()}_PORT" for c in CONTEXTS}


class Stack:
    def __init__(self, compose: list[str], env: dict[str, str], urls: dict[str, str], keys: dict[str, str]):
        self.compose, self.env, self.urls, self.keys = compose, env, urls, keys

    def run(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.compose, *args], cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"compose {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}{proc.stdout[-2000:]}",
                        pytrace=False)
        return proc

    def client(self, context: str, key: str = "ops") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.Client(base_url=self.urls[context], headers=headers, timeout=90)  # busy CI hosts


def _images() -> dict[str, str]:
    out = run_tool(["bash", "scripts/images.sh", "platform"], timeout=3000)
    return dict(line.split("=", 1) for line in out.splitlines() if re.fullmatch(r"LEDGERLINE_\w+=\S+", line))


@pytest.fixture(scope="module")
def stack(tmp_path_factory, artifacts_dir) -> Iterator[Stack]:
    compose = run_tool(["bash", "scripts/ensure-compose.sh"], timeout=3000).strip().split()
    images = _images()
    assert "LEDGERLINE_IMAGE" in images, images

    # Two keys through the compose secret: an operator with every scope, and a read-only viewer.
    keys = {"ops": secrets.token_urlsafe(24), "viewer": secrets.token_urlsafe(24)}
    folder = tmp_path_factory.mktemp("secrets")
    folder.chmod(0o755)
    keys_file = folder / "api-keys.json"
    keys_file.write_text(json.dumps({
        key_hash(keys["ops"]): {"actor": "ops", "scopes": ["*"]},
        key_hash(keys["viewer"]): {"actor": "viewer", "scopes": [f"{c}:read" for c in CONTEXTS]},
    }))
    keys_file.chmod(0o644)

    ports = {name: str(free_port()) for name in [*SERVICE_KEYS.values(), "LEDGERLINE_COMPOSE_PG_PORT",
                                                  "LEDGERLINE_COMPOSE_KAFKA_PORT", "LEDGERLINE_COMPOSE_SMTP_PORT",
                                                  "LEDGERLINE_COMPOSE_WORKBENCH_PORT"]}
    project = f"ledgerline-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **images, **ports, "LEDGERLINE_API_KEYS_FILE": str(keys_file),
           "COMPOSE_PROJECT_NAME": project}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)  # the stack's own collector
    urls = {c: f"http://127.0.0.1:{ports[SERVICE_KEYS[c]]}" for c in CONTEXTS}
    stack = Stack([*compose, "-p", project, "-f", str(REPO / "docker-compose.yml")], env, urls, keys)
    out = artifacts_dir / "compose"
    out.mkdir(parents=True, exist_ok=True)
    try:
        started = time.monotonic()
        up = stack.run("up", "--wait", "--wait-timeout", "600", "--no-build", "--quiet-pull", "-d", check=False,
                       timeout=900)
        (out / "up-seconds.txt").write_text(f"{time.monotonic() - started:.1f}\n")
        if up.returncode != 0:
            logs = stack.run("logs", "--no-color", "--tail", "80", check=False).stdout
            pytest.fail(f"compose up --wait failed:\n{up.stderr[-3000:]}\n{logs[-12000:]}", pytrace=False)
        yield stack
    finally:
        (out / "stack.log").write_text(stack.run("logs", "--no-color", check=False).stdout)
        down = stack.run("down", "-v", "--remove-orphans", "--timeout", "30", check=False)
        assert down.returncode == 0, down.stderr
        leftover = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                                  capture_output=True, text=True).stdout.split()
        assert leftover == [], f"down -v left volumes behind: {leftover}"


def _eventually(probe, timeout: float = 300.0, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"not reached within {timeout}s (last: {last!r})")


def test_every_service_is_healthy_closed_and_runs_as_the_image_user(stack: Stack):
    def states():
        ps = [json.loads(line) for line in stack.run("ps", "--format", "json").stdout.splitlines() if line.strip()]
        found = {p["Service"]: (p["State"], p.get("Health", "")) for p in ps}
        healthy = all(found.get(c.replace("_", "-")) == ("running", "healthy") for c in CONTEXTS)
        return found if healthy else None

    _eventually(states, timeout=180, interval=5)  # a check can time out on a busy host
    for context, url in stack.urls.items():
        assert httpx.get(f"{url}/healthz", timeout=90).status_code == 200
        # closed: the compose secret holds keys, so an anonymous call is a 401 problem
        anonymous = httpx.get(f"{url}/v1/openapi.json", timeout=90).json()
        some_path = next(p for p in anonymous["paths"] if "{" not in p)
        denied = httpx.get(f"{url}{some_path}", timeout=90)
        assert denied.status_code == 401 and denied.headers["content-type"].startswith("application/problem+json")
    with stack.client("invoicing", "viewer") as viewer:
        forbidden = viewer.post("/v1/customers", json={}, headers={"Idempotency-Key": "k"})
        assert forbidden.status_code == 403 and forbidden.json()["required_scope"] == "invoicing:write"
    user = stack.run("exec", "-T", "invoicing", "python", "-c",
                     "import os, pathlib; print(os.getuid()); pathlib.Path('/app/x').write_text('x')", check=False)
    assert user.stdout.split()[0] == "10001"
    assert "Read-only file system" in user.stderr


def test_the_readme_example_flow_with_a_delivered_dunning_email(stack: Stack):
    run = uuid.uuid4().hex[:6]
    customer, number = f"ACME-{run}", f"INV-{run}"
    with stack.client("invoicing") as invoicing, stack.client("reporting") as reporting, \
            stack.client("collections") as collections, stack.client("cash_application") as cash:
        r = invoicing.post("/v1/customers", headers={"Idempotency-Key": f"c-{run}"}, json={
            "customer_id": customer, "name": "Acme Corp", "currency": "USD", "payment_terms_days": 30,
            "credit_limit": "50000.00"})
        assert r.status_code == 201, r.text
        r = invoicing.post("/v1/invoices", headers={"Idempotency-Key": f"i-{run}"}, json={
            "customer_id": customer, "invoice_number": number, "issue_date": "2024-03-01",
            "lines": [{"description": "Widgets", "quantity": "10", "unit_price": "99.50"}]})
        assert r.status_code == 201, r.text
        invoice_id = r.json()["invoice_id"]

        # reporting sees the invoice through Kafka: 995.00 USD, 15 days past due on 2024-04-15
        def aged():
            body = reporting.get("/v1/reports/aging", params={"as_of": "2024-04-15", "currency": "USD"}).json()
            return body if "995.00" in json.dumps(body) else None
        _eventually(aged)

        # collections: contact details, then the dunning run; the notice is emailed to the sink
        def profiled():
            resp = collections.put(f"/v1/customers/{customer}/profile",
                                   json={"email": f"ap-{run}@acme.example", "time_zone": "America/New_York"})
            return resp if resp.status_code == 200 else None
        _eventually(profiled)

        def dunned():
            resp = collections.post("/v1/dunning-runs", headers={"Idempotency-Key": f"r-{run}-{time.monotonic()}"},
                                    json={"as_of": "2024-04-15", "run_at": "2024-04-15T15:00:00Z"})
            assert resp.status_code in (200, 201), resp.text
            return resp.json() if f"ap-{run}@acme.example" in stack.run("logs", "--no-color", "smtp-sink").stdout else None
        _eventually(dunned, timeout=180, interval=5)
        mail = stack.run("exec", "-T", "smtp-sink", "sh", "-c", "cat /tmp/mail/*.eml").stdout
        assert f"ap-{run}@acme.example" in mail and number.split("-", 1)[1] in mail

        # cash application: the lockbox file (once it knows the invoice); the receipt is matched
        _eventually(lambda: cash.get(f"/v1/open-items/{invoice_id}").status_code == 200)
        csv = ("receipt_id,value_date,amount,currency,payer_name,invoice_reference\n"
               f"CHK-{run},2024-04-20,995.00,USD,ACME CORPORATION,{number}\n")
        r = cash.post("/v1/bank-files", params={"format": "csv"}, content=csv.encode(),
                      headers={"Idempotency-Key": f"f-{run}"})
        assert r.status_code in (200, 201, 202), r.text

        def paid():
            body = invoicing.get(f"/v1/invoices/{invoice_id}").json()
            return body if body.get("status") == "closed" else None
        _eventually(paid)


def _spans(collector_log: str) -> list[dict[str, str]]:
    """Spans from the debug exporter's detailed log: service, trace id, parent id, id, name, kind."""
    spans, service = [], None
    # A batch's first "ResourceSpans #0" line carries the log record's timestamp and level.
    for block in re.split(r"\n(?=[^\n]*\bResourceSpans #|Span #)", collector_log):
        if "ResourceSpans #" in block.split("\n", 1)[0]:
            found = re.search(r"service\.name: Str\(([^)]+)\)", block)
            service = found.group(1) if found else None
        elif block.startswith("Span #"):
            fields = dict(re.findall(r"^\s+(Trace ID|Parent ID|ID|Name|Kind)\s*: ?(.*)$", block, re.M))
            spans.append({"service": service, **{k: v.strip() for k, v in fields.items()}})
    return spans


def test_one_trace_follows_an_invoice_from_http_through_kafka_into_reporting(stack: Stack):
    trace_id = secrets.token_hex(16)
    run = uuid.uuid4().hex[:6]
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    with stack.client("invoicing") as invoicing:
        r = invoicing.post("/v1/customers", headers={"Idempotency-Key": f"tc-{run}"}, json={
            "customer_id": f"TRACE-{run}", "name": "Trace Co", "currency": "USD", "payment_terms_days": 30,
            "credit_limit": "1000.00"})
        assert r.status_code == 201, r.text
        r = invoicing.post("/v1/invoices", headers={"Idempotency-Key": f"ti-{run}", "traceparent": traceparent}, json={
            "customer_id": f"TRACE-{run}", "invoice_number": f"T-{run}", "issue_date": "2024-03-01",
            "lines": [{"description": "Traced", "quantity": "1", "unit_price": "10.00"}]})
        assert r.status_code == 201, r.text

    def traced():
        spans = [s for s in _spans(stack.run("logs", "--no-color", "--no-log-prefix", "otel-collector").stdout)
                 if s.get("Trace ID") == trace_id]
        services = {s["service"] for s in spans}
        return spans if {"ledgerline-invoicing", "ledgerline-reporting"} <= services else None

    spans = _eventually(traced, timeout=300, interval=5)
    http = [s for s in spans if s["service"] == "ledgerline-invoicing" and "Server" in s.get("Kind", "")]
    consumed = [s for s in spans if s["service"] == "ledgerline-reporting" and "Consumer" in s.get("Kind", "")]
    assert http and consumed, spans
    assert any(s["Name"].startswith("POST /v1/invoices") for s in http), http
    # reporting's consumer span descends from invoicing's request span (through the spans inside
    # the request that appended the event): the trace crossed the outbox, the relay and Kafka
    by_id = {s["ID"]: s for s in spans}

    def ancestors(span):
        while span.get("Parent ID") in by_id:
            span = by_id[span["Parent ID"]]
            yield span

    assert any(a in http for c in consumed for a in ancestors(c)), spans
    (Path(__file__).resolve().parents[2] / "artifacts" / "compose" / "trace.json").write_text(json.dumps(spans, indent=2))
