"""Constants and helpers shared by the deployment packaging tests."""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"

CONTEXTS = ("invoicing", "cash_application", "collections", "disputes", "reporting")
PUBLISHING_CONTEXTS = ("invoicing", "cash_application", "collections", "disputes")
HOST_PORTS = dict(zip(CONTEXTS, range(8101, 8106)))
CONTAINER_PORT = 8000
UID = 10001


def k8s_name(context: str) -> str:
    """cash_application -> cash-application (Kubernetes and compose names allow no '_')."""
    return context.replace("_", "-")


def env_prefix(context: str) -> str:
    return f"LEDGERLINE_{context.upper()}_"


def topic(context: str) -> str:
    return f"ledgerline.{context}.events"


def run_tool(args: list[str], *, timeout: float = 600) -> str:
    """Runs a command from the repository root; a failure fails the test with its stderr."""
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{shlex.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}", pytrace=False)
    return proc.stdout


# --- helpers over rendered Kubernetes documents -----------------------------------------------


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod template) of every workload."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            yield f"CronJob/{doc['metadata']['name']}", doc["spec"]["jobTemplate"]["spec"]["template"]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_map(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}
