"""docker-compose.yml, as Docker Compose's own loader (compose-go, via tools/deploycheck) resolves
it: valid against the Compose Specification schema, and wired the way the services expect."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import (
    CONTAINER_PORT,
    CONTEXTS,
    HOST_PORTS,
    PUBLISHING_CONTEXTS,
    REPO,
    env_prefix,
    k8s_name,
    topic,
)

KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:17"
OTELCOL_IMAGE = "otel/opentelemetry-collector:0.165.0"
INFRASTRUCTURE = {"postgres", "kafka", "kafka-init", "otel-collector"}
# Stack helpers that run in the service image but are not services (the dunning email sink).
HELPERS = {"smtp-sink"}
# The web app and its migration: the image's, calling the services (tested below on its own).
WORKBENCH = {"workbench", "workbench-migrate"}


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def app_services(compose):
    return {c: services(compose)[k8s_name(c)] for c in CONTEXTS}


def depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: dep["condition"] for name, dep in (service.get("depends_on") or {}).items()}


# --- the validator itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "broken, message",
    [
        ("services:\n  a:\n    image: x\n    depends_on: [nowhere]\n", "nowhere"),
        ("services:\n  a:\n    image: x\n    restart_policy: always\n", "restart_policy"),
        ("services:\n  a:\n    image: x\n    ports: ['8101:8000:1:2']\n", "address"),
        ("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n", "cycle"),
    ],
    ids=["unknown-dependency", "unknown-key", "bad-port", "cycle"],
)
def test_the_loader_rejects_what_docker_compose_rejects(deploycheck, tmp_path: Path, broken, message):
    (tmp_path / "compose.yml").write_text(broken)
    proc = subprocess.run([deploycheck, "compose", "-project-dir", str(tmp_path), "compose.yml"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr.lower()


# --- what runs --------------------------------------------------------------------------------


def test_the_platform_services(compose):
    expected = INFRASTRUCTURE | HELPERS | WORKBENCH | {k8s_name(c) for c in CONTEXTS} | {f"{k8s_name(c)}-migrate" for c in CONTEXTS}
    assert set(services(compose)) == expected


def test_official_kafka_and_postgres_images(compose):
    svc = services(compose)
    assert svc["kafka"]["image"] == KAFKA_IMAGE
    assert svc["kafka-init"]["image"] == KAFKA_IMAGE
    assert svc["postgres"]["image"] == POSTGRES_IMAGE
    assert svc["otel-collector"]["image"] == OTELCOL_IMAGE


def test_images_and_host_ports_can_be_overridden_and_bind_loopback_only():
    text = (REPO / "docker-compose.yml").read_text()
    for variable, default in (("LEDGERLINE_POSTGRES_IMAGE", POSTGRES_IMAGE), ("LEDGERLINE_KAFKA_IMAGE", KAFKA_IMAGE),
                              ("LEDGERLINE_OTELCOL_IMAGE", OTELCOL_IMAGE), ("LEDGERLINE_IMAGE", "ledgerline:dev")):
        assert f"${{{variable}:-{default}}}" in text, variable
    published = re.findall(r'^\s+- "([^"]+):\d+"$', text, re.M)
    assert published and all(p.startswith("127.0.0.1:${LEDGERLINE_COMPOSE_") for p in published), published


def test_the_services_read_their_api_keys_from_the_compose_secret(compose):
    svc = services(compose)
    assert "api-keys" in compose["secrets"]
    for context in CONTEXTS:
        app = svc[k8s_name(context)]
        assert [s["source"] for s in app["secrets"]] == ["api-keys"], context
        assert app["environment"][f"{env_prefix(context)}API_KEYS_FILE"] == "/run/secrets/api-keys"
        assert f"{env_prefix(context)}ALLOW_OPEN" not in app["environment"], context
        assert app["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"


def test_the_services_and_migrations_share_one_image_built_from_the_dockerfile(compose):
    ledgerline = {n: s for n, s in services(compose).items() if n not in INFRASTRUCTURE}
    assert HELPERS <= set(ledgerline)
    assert len({s["image"] for s in ledgerline.values()}) == 1
    for name, s in ledgerline.items():
        assert Path(s["build"]["context"]) == REPO, name
        assert s["build"]["dockerfile"] == "Dockerfile", name
        assert s.get("user") in (None, "10001", "10001:10001"), name  # the image's non-root user
        assert s["read_only"] is True, name
        assert s["cap_drop"] == ["ALL"], name


@pytest.mark.parametrize("context", CONTEXTS)
def test_commands_ports_and_roles(compose, context):
    svc = services(compose)
    app, migrate = svc[k8s_name(context)], svc[f"{k8s_name(context)}-migrate"]
    prefix = env_prefix(context)
    assert app["command"] == [f"services.{context}", "serve"]
    assert migrate["command"] == [f"services.{context}", "migrate"]
    assert migrate["restart"] == "no"

    (port,) = app["ports"]
    assert int(port["published"]) == HOST_PORTS[context]
    assert port["target"] == CONTAINER_PORT
    env = app["environment"]
    assert env[f"{prefix}ROLE"] == "all"
    assert int(env[f"{prefix}PORT"]) == CONTAINER_PORT
    assert env[f"{prefix}HOST"] == "0.0.0.0"


@pytest.mark.parametrize("context", CONTEXTS)
def test_env_names_use_the_service_prefix(compose, context):
    prefix = env_prefix(context)
    svc = services(compose)
    for name in (k8s_name(context), f"{k8s_name(context)}-migrate"):
        env = svc[name]["environment"]
        assert {f"{prefix}DATABASE_URL", f"{prefix}KAFKA_BOOTSTRAP_SERVERS"} <= env.keys(), name
        stray = [k for k in env if k.startswith("LEDGERLINE_") and not k.startswith(prefix)]
        assert stray == [], f"{name} sets another service's settings: {stray}"
        assert env[f"{prefix}KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name


def test_the_env_names_are_settings_the_services_read(compose):
    import importlib

    for context, svc in app_services(compose).items():
        module = importlib.import_module(f"services.{context}.settings")
        (settings_class,) = [v for k, v in vars(module).items() if k.endswith("Settings") and k != "ServiceSettings"
                             and getattr(v, "__module__", "") == module.__name__]
        fields = {f.upper() for f in settings_class.model_fields}
        for key in svc["environment"]:
            if key.startswith("LEDGERLINE_"):
                assert key.removeprefix(env_prefix(context)) in fields, key


# --- infrastructure ---------------------------------------------------------------------------


def test_kafka_runs_kraft_combined_mode_on_one_node(compose):
    env = {k: str(v) for k, v in services(compose)["kafka"]["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert re.fullmatch(rf"{node_id}@kafka:\d+", voters), voters
    voter_port = voters.rsplit(":", 1)[1]

    listeners = dict(reversed(item.split("://")) for item in env["KAFKA_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert listeners.get(f":{voter_port}") == controller
    assert set(listeners.values()) <= set(protocols)
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]] == "kafka:9092"
    assert controller not in advertised

    # One broker: every internal topic must accept replication factor 1.
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "KAFKA_DEFAULT_REPLICATION_FACTOR"):
        assert env[key] == "1", key
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])  # a base64url UUID
    assert any(v["target"] == env["KAFKA_LOG_DIRS"] for v in services(compose)["kafka"]["volumes"])


def test_kafka_init_creates_the_four_topics(compose):
    init = services(compose)["kafka-init"]
    env = init["environment"]
    assert env["TOPICS"].split() == [topic(c) for c in PUBLISHING_CONTEXTS]
    assert env["PARTITIONS"] == "3"
    assert env["BOOTSTRAP_SERVERS"] == "kafka:9092"
    (script,) = [v for v in init["volumes"] if v["target"] == init["entrypoint"][-1]]
    assert Path(script["source"]).is_file()
    assert script["read_only"] is True
    assert init["restart"] == "no"


def test_postgres_creates_the_five_databases_the_services_use(compose):
    pg = services(compose)["postgres"]
    (initdb,) = [v for v in pg["volumes"] if v["target"] == "/docker-entrypoint-initdb.d"]
    scripts = sorted(Path(initdb["source"]).glob("*.sql"))
    assert scripts, "no init script"
    created = set(re.findall(r"CREATE DATABASE (\w+)", "\n".join(s.read_text() for s in scripts)))
    assert created == {f"ledgerline_{c}" for c in CONTEXTS} | {"ledgerline_workbench"}

    user, password = pg["environment"]["POSTGRES_USER"], pg["environment"]["POSTGRES_PASSWORD"]
    svc = services(compose)
    for context in CONTEXTS:
        for name in (k8s_name(context), f"{k8s_name(context)}-migrate"):
            url = svc[name]["environment"][f"{env_prefix(context)}DATABASE_URL"]
            assert url == f"postgresql+asyncpg://{user}:{password}@postgres:5432/ledgerline_{context}", name


# --- start-up order ---------------------------------------------------------------------------


def test_the_depends_on_graph(compose):
    svc = services(compose)
    assert depends(svc["kafka-init"]) == {"kafka": "service_healthy"}
    for context in CONTEXTS:
        name = k8s_name(context)
        assert depends(svc[f"{name}-migrate"]) == {"postgres": "service_healthy"}
        assert depends(svc[name]) == {
            "postgres": "service_healthy",
            "kafka": "service_healthy",
            f"{name}-migrate": "service_completed_successfully",
            "kafka-init": "service_completed_successfully",
            "otel-collector": "service_started",
        }


def test_every_awaited_condition_can_be_met(compose):
    svc = services(compose)
    for name, s in svc.items():
        for dependency, condition in depends(s).items():
            if condition == "service_healthy":
                test = svc[dependency].get("healthcheck", {}).get("test")
                assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} waits for {dependency} to be healthy"
            if condition == "service_completed_successfully":
                assert svc[dependency]["restart"] == "no", f"{dependency} must exit for {name} to start"


def test_the_services_are_healthy_only_when_ready(compose):
    for context, s in app_services(compose).items():
        test = " ".join(s["healthcheck"]["test"])
        assert f"127.0.0.1:{CONTAINER_PORT}/readyz" in test, context


def test_the_workbench_calls_the_services_by_name_with_its_key_and_its_own_database(compose):
    svc = services(compose)
    app, migrate = svc["workbench"], svc["workbench-migrate"]
    assert app["command"] == ["services.workbench", "serve"] and migrate["command"] == ["services.workbench", "migrate"]
    env = app["environment"]
    for context in CONTEXTS:
        assert env[f"LEDGERLINE_WORKBENCH_{context.upper()}_URL"] == f"http://{k8s_name(context)}:{CONTAINER_PORT}"
    assert env["LEDGERLINE_WORKBENCH_DATABASE_URL"].endswith("@postgres:5432/ledgerline_workbench")
    assert migrate["environment"]["LEDGERLINE_WORKBENCH_DATABASE_URL"] == env["LEDGERLINE_WORKBENCH_DATABASE_URL"]
    assert "LEDGERLINE_WORKBENCH_SEED_DEMO_USERS" not in env  # never demo users outside make run
    assert int(env["LEDGERLINE_WORKBENCH_PORT"]) == CONTAINER_PORT and env["LEDGERLINE_WORKBENCH_HOST"] == "0.0.0.0"
    (port,) = app["ports"]
    assert int(port["published"]) == 8106 and port["host_ip"] == "127.0.0.1"
    assert depends(app) == {"postgres": "service_healthy", "workbench-migrate": "service_completed_successfully"}
    from services.workbench.settings import WorkbenchSettings

    fields = {f.upper() for f in WorkbenchSettings.model_fields}
    assert {k.removeprefix("LEDGERLINE_WORKBENCH_") for k in env} <= fields
