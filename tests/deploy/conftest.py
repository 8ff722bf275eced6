"""Fixtures for the deployment packaging tests: rendered kustomizations and the resolved
docker-compose project. The tools are installed on first use by the scripts/ensure-*.sh
scripts (into the git-ignored .local/), so a fresh clone needs only Go and Python."""
from __future__ import annotations

import functools
import shlex
from typing import Any, Callable

import pytest
import yaml

from tests.deploy.support import K8S, REPO, run_tool


@pytest.fixture(scope="session")
def kustomize_cmd() -> list[str]:
    return shlex.split(run_tool(["bash", "scripts/ensure-kustomize.sh"]).strip())


@pytest.fixture(scope="session")
def render(kustomize_cmd: list[str]) -> Callable[[str], list[dict[str, Any]]]:
    """render("overlays/dev") -> the documents of `kustomize build deploy/k8s/overlays/dev`."""

    @functools.cache
    def _render(target: str) -> tuple[dict[str, Any], ...]:
        out = run_tool([*kustomize_cmd, str(K8S / target)])
        return tuple(doc for doc in yaml.safe_load_all(out) if doc)

    return lambda target: list(_render(target))


@pytest.fixture(scope="session")
def deploycheck() -> str:
    return run_tool(["bash", "scripts/ensure-deploycheck.sh"]).strip()


@pytest.fixture(scope="session")
def compose(deploycheck: str) -> dict[str, Any]:
    """docker-compose.yml as Docker Compose's own loader resolves it (schema-validated)."""
    return yaml.safe_load(run_tool([deploycheck, "compose", "-project-dir", str(REPO), "docker-compose.yml"]))
