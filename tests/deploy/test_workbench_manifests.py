"""deploy/k8s/workbench: the web app beside the platform. Its Kubernetes objects validate
strictly; it runs as the services do (non-root, read-only root, no token, probes on /healthz
and /readyz); it reaches the five services by their Service names with its own key from a
Secret, and its database is its own CloudNativePG Cluster."""
from __future__ import annotations

import pytest

from services.workbench.settings import WorkbenchSettings
from tests.deploy.support import CONTAINER_PORT, CONTEXTS, UID, containers, env_map, find, k8s_name, of_kind
from tests.deploy.test_kubernetes import KUBERNETES_VERSIONS, validation_errors


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_workbench_objects_validate_strictly(render, version):
    docs = [d for d in render("workbench") if not d["apiVersion"].startswith("postgresql.cnpg.io")]
    assert {d["kind"] for d in docs} == {"ServiceAccount", "Deployment", "Service", "PodDisruptionBudget"}
    assert validation_errors(docs, version) == []


def test_the_workbench_runs_like_the_services_and_calls_them_by_name(render):
    docs = render("workbench")
    deployment = find(docs, "Deployment", "workbench")
    template = deployment["spec"]["template"]
    assert template["spec"]["automountServiceAccountToken"] is False
    assert template["spec"]["securityContext"]["runAsUser"] == UID
    (container,) = containers(template)
    assert container["args"] == ["services.workbench", "serve"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = env_map(container)
    for context in CONTEXTS:
        assert env[f"LEDGERLINE_WORKBENCH_{context.upper()}_URL"]["value"] == f"http://{k8s_name(context)}:{CONTAINER_PORT}"
    assert env["LEDGERLINE_WORKBENCH_API_KEY"]["valueFrom"]["secretKeyRef"] == \
        {"name": "ledgerline-workbench-api-key", "key": "api-key"}
    assert env["LEDGERLINE_WORKBENCH_SECURE_COOKIES"]["value"] == "true"
    assert "LEDGERLINE_WORKBENCH_SEED_DEMO_USERS" not in env
    fields = {f.upper() for f in WorkbenchSettings.model_fields}
    assert {k.removeprefix("LEDGERLINE_WORKBENCH_") for k in env if k.startswith("LEDGERLINE_WORKBENCH_")} <= fields
    (cluster,) = of_kind(docs, "Cluster")
    assert cluster["spec"]["bootstrap"]["initdb"]["database"] == "ledgerline_workbench"
    secret = f"{cluster['metadata']['name']}-app"
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == secret
    service = find(docs, "Service", "workbench")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_platform_overlays_leave_the_workbench_out(render):
    """It is applied on its own (kubectl apply -k deploy/k8s/workbench) after the platform."""
    for target in ("base", "overlays/dev", "overlays/production"):
        assert not [d for d in render(target) if d["metadata"]["name"].startswith("workbench")], target
