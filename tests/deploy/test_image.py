"""The service image as scripts/images.sh builds it from the Dockerfile (official python:3.11-slim
when a registry answers, else a base made here): small, non-root, runs on a read-only root
filesystem, and cached by content (a second build of the same tree builds nothing). Needs
Docker: `make test-platform` (marker `platform`)."""
from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from tests.deploy.support import REPO, UID, run_tool

pytestmark = pytest.mark.platform

# Issue 14's aim: under 250 MB (slim base, no build tools or caches in the final stage). 246 MB
# measured 2026-12-01 with scripts/images.sh service on the local Debian base (251 MB before
# python3-venv's ensurepip wheels left the runtime base for the discarded build stage); 260 MB
# (260,120,572 bytes) on 2026-12-02 once the workbench's OIDC sign-in brought joserfc and
# cryptography (13 MB: the maintained RSA/EC signature check an ID token needs; issue 12 asks for
# OIDC by configuration, so the image must carry it). A new heavy dependency fails this and has to
# earn its place.
MAX_BYTES = 265_000_000


@pytest.fixture(scope="module")
def image(artifacts_dir) -> str:
    started = time.monotonic()
    out = run_tool(["bash", "scripts/images.sh", "service"], timeout=3000)
    (artifacts_dir / "image-build-seconds.txt").write_text(f"{time.monotonic() - started:.1f}\n")
    (tag,) = re.findall(r"^LEDGERLINE_IMAGE=(\S+)$", out, re.M)
    return tag


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_the_image_is_small_and_non_root(image, artifacts_dir):
    (info,) = json.loads(docker("image", "inspect", image).stdout)
    size = info["Size"]
    (artifacts_dir / "image-size.txt").write_text(f"{image} {size} bytes ({size / 1e6:.0f} MB)\n")
    assert size < MAX_BYTES, f"{image} is {size / 1e6:.0f} MB"
    assert info["Config"]["User"] == f"{UID}:{UID}"
    assert info["Config"]["Entrypoint"] == ["python", "-m"]


def test_it_runs_on_a_read_only_root_filesystem_without_build_tools(image):
    script = ("import os, pathlib, shutil, services.invoicing.main, shared.service\n"
              "print(os.getuid())\n"
              "print(shutil.which('pip'), shutil.which('gcc'), shutil.which('strip'))\n"
              "try:\n    pathlib.Path('/opt/ledgerline/x').write_text('x')\nexcept OSError as e:\n    print(e.errno)\n")
    run = docker("run", "--rm", "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges:true",
                 "--network=none", "--entrypoint", "python", image, "-c", script)
    uid, tools, errno = run.stdout.split("\n")[:3]
    assert uid == str(UID)
    assert tools == "None None None"
    assert errno in ("30", "13")  # EROFS (or EACCES): nothing in the image is writable


def test_without_keys_the_service_refuses_to_start(image):
    run = docker("run", "--rm", "--read-only", "--network=none",
                 "-e", "LEDGERLINE_INVOICING_DATABASE_URL=postgresql+asyncpg://x:y@127.0.0.1:1/x",
                 image, "services.invoicing", "serve", check=False)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "ALLOW_OPEN=true" in run.stderr


def test_a_second_build_of_the_same_tree_is_a_cache_hit(image):
    started = time.monotonic()
    out = run_tool(["bash", "scripts/images.sh", "service"], timeout=600)
    assert f"LEDGERLINE_IMAGE={image}" in out
    assert time.monotonic() - started < 60
    assert (REPO / "build-ca.pem").exists() is False  # the staged CA never stays in the clone
