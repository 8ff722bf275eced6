"""The Dockerfile and its build context, checked without a Docker engine: hadolint lints the
Dockerfile, Docker's own .dockerignore matcher (tools/deploycheck) computes the build context,
and the stages are read instruction by instruction."""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.support import REPO, UID, run_tool

DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """Logical instructions: continuation lines joined, comment lines dropped (as Docker does)."""
    result, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            result.append(Instruction(keyword.upper(), args.strip()))
    return result


def stages() -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages)."""
    args: dict[str, str] = {}
    result: list[Stage] = []
    for inst in instructions(DOCKERFILE.read_text()):
        if inst.keyword == "FROM":
            words = inst.args.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append(Stage(base, name, []))
        elif not result and inst.keyword == "ARG":
            key, _, default = inst.args.partition("=")
            args[key] = default
        elif result:
            result[-1].instructions.append(inst)
    return args, result


def exec_form(inst: Instruction) -> list[str]:
    return json.loads(inst.args)


def test_hadolint_passes():
    hadolint = run_tool(["bash", "scripts/ensure-hadolint.sh"]).strip()
    run_tool([hadolint, "--failure-threshold", "info", str(DOCKERFILE)])


def test_hadolint_passes_on_the_local_base_and_stand_in_images():
    """deploy/images/: the Python base and the PostgreSQL, Kafka and collector stand-ins that
    scripts/images.sh builds where no registry answers."""
    hadolint = run_tool(["bash", "scripts/ensure-hadolint.sh"]).strip()
    files = sorted((REPO / "deploy" / "images").glob("*.Dockerfile"))
    assert {f.name for f in files} >= {"python-base.Dockerfile", "postgres.Dockerfile", "kafka.Dockerfile",
                                       "otelcol.Dockerfile"}
    run_tool([hadolint, "--failure-threshold", "info", *map(str, files)])


def test_multi_stage_on_python_3_11_slim():
    _, all_stages = stages()
    assert len(all_stages) >= 2
    for stage in all_stages:
        assert stage.base.startswith("python:3.11-slim"), stage.base
    build, runtime = all_stages[0], all_stages[-1]
    # The runtime gets the built virtualenv and nothing else from the build stage.
    copies = [i for i in runtime.all("COPY") if "--from=" in i.args]
    assert copies, "the runtime stage copies nothing from the build stage"
    for inst in copies:
        assert f"--from={build.name}" in inst.args


def test_runtime_runs_as_uid_10001_with_python_m_entrypoint():
    _, all_stages = stages()
    runtime = all_stages[-1]
    user = runtime.all("USER")[-1].args
    assert user.split(":")[0] == str(UID)  # numeric, so runAsNonRoot can be verified
    entrypoint = exec_form(runtime.all("ENTRYPOINT")[-1])
    assert entrypoint == ["python", "-m"]
    assert exec_form(runtime.all("CMD")[-1])[1] == "serve"
    assert "8000" in " ".join(i.args for i in runtime.all("EXPOSE"))


def test_no_healthcheck_and_no_build_tools_in_the_runtime():
    _, all_stages = stages()
    assert not any(s.all("HEALTHCHECK") for s in all_stages), "probes come from Kubernetes/compose"
    runtime_runs = " ".join(i.args for i in all_stages[-1].all("RUN"))
    for tool in ("apt-get install", "build-essential", "gcc", "git ", "curl", "wget", "pip install"):
        assert tool not in runtime_runs, tool


def test_dependencies_follow_the_lock_then_the_project_without_deps():
    args, all_stages = stages()
    runs = [i.args for i in all_stages[0].all("RUN")]
    lock_install = next(i for i, r in enumerate(runs) if re.search(r'pip install .*-r "?\S*(requirements|\$\{REQUIREMENTS\})', r))
    project_install = next(i for i, r in enumerate(runs) if "--no-deps" in r)
    assert lock_install < project_install
    stage_args = {i.args.partition("=")[0]: i.args.partition("=")[2] for i in all_stages[0].all("ARG")}
    assert (REPO / stage_args.get("REQUIREMENTS", "requirements.lock")).is_file()


@pytest.fixture(scope="module")
def build_context(deploycheck) -> set[str]:
    return set(json.loads(run_tool([deploycheck, "context", str(REPO)])))


def test_the_build_context_has_what_the_dockerfile_copies(build_context):
    args, all_stages = stages()
    stage_args = {k: v for s in all_stages for i in s.all("ARG") for k, _, v in [i.args.partition("=")]}
    for stage in all_stages:
        for inst in stage.all("COPY"):
            if "--from=" in inst.args:
                continue
            words = [w for w in shlex.split(inst.args) if not w.startswith("--")]
            for source in words[:-1]:
                source = re.sub(r"\$\{(\w+)\}", lambda m: stage_args[m.group(1)], source)
                if re.search(r"[][*?]", source):
                    continue  # a glob: optional by design (build-ca.pe[m], staged by scripts/images.sh)
                path = REPO / source
                assert path.exists(), f"COPY {source}: not in the repository"
                if path.is_dir():
                    inside = [f for f in build_context if f.startswith(source.rstrip("/") + "/")]
                    assert inside, f"COPY {source}: .dockerignore excludes all of it"
                else:
                    assert source in build_context, f"COPY {source}: excluded by .dockerignore"


def test_the_build_context_leaves_out_local_state(build_context):
    for path in build_context:
        top = path.split("/")[0]
        assert top not in {".git", ".venv", ".local", "tests", "deploy", "docs", "artifacts", "tools"}, path
        assert "__pycache__" not in path and not path.endswith(".pyc"), path
        assert Path(path).name != ".env", path
    assert "pyproject.toml" in build_context
    assert any(p.startswith("services/") for p in build_context)
    assert any(p.startswith("shared/") for p in build_context)


def test_package_data_the_project_declares_reaches_the_image(build_context):
    """Migrations (*.sql) live in the packages: the context must carry them."""
    sql_in_repo = {str(p.relative_to(REPO)) for top in ("shared", "services") for p in (REPO / top).rglob("*.sql")}
    assert sql_in_repo, "no migrations found"
    assert sql_in_repo <= build_context


def test_the_staged_build_ca_is_optional_git_ignored_and_left_in_the_build_stage():
    """scripts/images.sh may stage the machine's CA bundle as build-ca.pem (a TLS-intercepting
    proxy's CA for pip): the build must not need it, git must never see it, and it must not
    reach the runtime stage."""
    import subprocess

    text = DOCKERFILE.read_text()
    assert "build-ca.pe[m]" in text  # a glob: COPY succeeds without the file
    assert "syntax=" not in text.split("\n", 1)[0]  # no BuildKit frontend image to fetch
    ignored = subprocess.run(["git", "check-ignore", "-q", "build-ca.pem"], cwd=REPO)
    assert ignored.returncode == 0, "build-ca.pem must be git-ignored"
    _, all_stages = stages()
    runtime = all_stages[-1]
    assert not any("build-ca" in i.args for i in runtime.instructions)
