"""The workbench's browser tests: the five services as real processes (PostgreSQL, Kafka) with
API keys configured, a book loaded through their APIs, the workbench as its own process with its
own key (`delegate`: the person acting is the events' actor), and Debian's chromium."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from shared.auth import key_hash
from tests.support.infra import fresh_database, sqlalchemy_url
from tests.support.platform import CONTEXTS, free_port, running_platform
from tests.workbench import book

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "services" / "workbench" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOADER_KEY = "workbench-test-loader"
WORKBENCH_KEY = "workbench-test-bff"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/tests/workbench/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@dataclass
class Stack:
    url: str
    urls: dict[str, str]
    api: dict[str, str]          # headers of the loader's key (reads anything)
    book: dict
    out: Path


def _service_keys() -> dict[str, str]:
    env = {}
    for context in CONTEXTS:
        keys = {key_hash(LOADER_KEY): {"actor": "test-loader", "scopes": ["*"]},
                key_hash(WORKBENCH_KEY): {"actor": "workbench", "scopes": [f"{context}:*", "delegate"]}}
        env[f"LEDGERLINE_{context.upper()}_API_KEYS"] = json.dumps(keys)
    return env


async def _start_workbench(database: str, urls: dict[str, str], log: Path, api_key: str | None = WORKBENCH_KEY,
                           port: int | None = None, extra_env: dict[str, str] | None = None
                           ) -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    env = {**os.environ, "LEDGERLINE_WORKBENCH_DATABASE_URL": sqlalchemy_url(database),
           "LEDGERLINE_WORKBENCH_PORT": str(port), **({"LEDGERLINE_WORKBENCH_API_KEY": api_key} if api_key else {}),
           "LEDGERLINE_WORKBENCH_SEED_DEMO_USERS": "true", "LEDGERLINE_WORKBENCH_LOG_LEVEL": "WARNING",
           **{f"LEDGERLINE_WORKBENCH_{c.upper()}_URL": u for c, u in urls.items()}, **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "services.workbench", "serve"], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(300):
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"workbench did not start:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
async def stack(artifacts_dir):
    out = artifacts_dir / "workbench"
    out.mkdir(parents=True, exist_ok=True)
    async with running_platform(out / "logs", extra_env=_service_keys()) as platform:
        api = {"Authorization": f"Bearer {LOADER_KEY}"}
        run = uuid.uuid4().hex[:6]
        loaded = await book.load(platform.urls, api, ["alice", "alice", "alice", "camille"], 4, run, date.today())
        async with fresh_database("wb") as database:
            proc, url = await _start_workbench(database, platform.urls, out / "logs" / "workbench.log")
            try:
                yield Stack(url=url, urls=platform.urls, api=api, book=loaded, out=out)
            finally:
                proc.terminate()
                proc.wait(timeout=20)


@pytest.fixture(scope="session")
async def browser():
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def new_page(browser, stack: Stack) -> Page:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page = await context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
    # Every console error counts but the one a refused sign-in logs for its own 401 page.
    page.on("console", lambda m: page.errors.append(m.text)  # type: ignore[attr-defined]
            if m.type == "error" and "401 (Unauthorized)" not in m.text else None)
    return page


async def sign_in(page: Page, stack: Stack, username: str, password: str | None = None) -> None:
    await page.goto(f"{stack.url}/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password or f"{username}-pass-2026")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state("networkidle")


async def check_accessibility(page: Page, name: str) -> None:
    """axe-core (npm, pinned) run in the page: no serious or critical violation. Evaluated through
    the DevTools protocol, so the page's Content-Security-Policy stays as served."""
    await page.evaluate(AXE.read_text())
    result = await page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
           if v["impact"] in ("serious", "critical")]
    assert bad == [], f"{name}: {bad}"


async def snapshot(page: Page, stack: Stack, name: str) -> Path:
    path = stack.out / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000
    return path
