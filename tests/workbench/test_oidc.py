"""OIDC sign-in through a real OpenID provider: Keycloak (scripts/keycloak.sh: the distribution
from Maven Central, dev mode, the realm tests/workbench/keycloak-realm.json imported), started
once for this module. A second workbench, configured for OIDC, serves the same five services.

People sign in on Keycloak's own login page (authorization code flow with PKCE, state and
nonce); the ID token's groups claim gives the role, its locale claim the language; what the
person then does is recorded by the services with their name as the actor. A Keycloak user in
no mapped group is refused with a page that says why, and gets no session. Signing out ends
Keycloak's session too (RP-initiated logout): the next sign-in asks for the password again."""
from __future__ import annotations

import asyncio
import json
import os
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.infra import fresh_database
from tests.support.platform import free_port
from tests.workbench.conftest import ROOT, _start_workbench, check_accessibility, new_page, snapshot

# The first test also waits for Keycloak: on a cold machine its download, unpacking and first
# build come before the start (about 4 minutes on 2 busy cores), hence more than the usual 600 s.
pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(1200)]

REALM_FILE = ROOT / "tests" / "workbench" / "keycloak-realm.json"
REALM = json.loads(REALM_FILE.read_text())
CLIENT = REALM["clients"][0]
ROLE_MAPPING = {"ar-collectors": "collector", "ar-cash-application": "cash_applier", "ar-disputes": "dispute_analyst",
                "ar-managers": "manager", "ar-admins": "admin"}


async def _keycloak(command: str, env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec("bash", str(ROOT / "scripts" / "keycloak.sh"), command, cwd=ROOT,
                                                env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()[-4000:]


@pytest.fixture(scope="module")
async def keycloak(stack):
    """The issuer URL of a Keycloak started for this module (downloaded into the cache the first time)."""
    port = free_port()
    env = {**os.environ, "LEDGERLINE_KEYCLOAK_PORT": str(port), "LEDGERLINE_KEYCLOAK_REALM": str(REALM_FILE)}
    started = time.monotonic()
    await _keycloak("up", env)
    (stack.out / "keycloak-startup.json").write_text(json.dumps({"seconds": round(time.monotonic() - started, 1)}))
    try:
        yield f"http://127.0.0.1:{port}/realms/{REALM['realm']}"
    finally:
        await _keycloak("down", env)


@pytest.fixture(scope="module")
async def oidc_url(stack, keycloak, tmp_path_factory):
    """A workbench whose people sign in at Keycloak (the client secret read from a file)."""
    secret = tmp_path_factory.mktemp("oidc") / "client-secret"
    secret.write_text(CLIENT["secret"] + "\n")
    port = free_port()
    env = {"LEDGERLINE_WORKBENCH_OIDC_ISSUER": keycloak, "LEDGERLINE_WORKBENCH_OIDC_CLIENT_ID": CLIENT["clientId"],
           "LEDGERLINE_WORKBENCH_OIDC_CLIENT_SECRET_FILE": str(secret),
           "LEDGERLINE_WORKBENCH_OIDC_REDIRECT_BASE_URL": f"http://127.0.0.1:{port}",
           "LEDGERLINE_WORKBENCH_OIDC_ROLE_CLAIM": "groups",
           "LEDGERLINE_WORKBENCH_OIDC_ROLE_MAPPING": json.dumps(ROLE_MAPPING),
           "LEDGERLINE_WORKBENCH_OIDC_PROVIDER_NAME": "Keycloak",
           "LEDGERLINE_WORKBENCH_SEED_DEMO_USERS": "false"}
    async with fresh_database("wboidc") as database:
        proc, url = await _start_workbench(database, stack.urls, stack.out / "logs" / "workbench-oidc.log",
                                           port=port, extra_env=env)
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)


async def _sign_in_at_keycloak(page, oidc_url: str, username: str) -> None:
    await page.goto(f"{oidc_url}/login")
    assert await page.locator("input[type=password]").count() == 0  # no local password form
    await page.get_by_test_id("oidc-sign-in").click()
    await page.wait_for_url("**/realms/ledgerline/protocol/openid-connect/auth**")
    await page.locator("#username").fill(username)
    await page.locator("#password").fill(f"{username}-kc-pass-2026")
    await page.locator("#kc-login").click()
    await page.wait_for_url(f"{oidc_url}/**")
    await page.wait_for_load_state("networkidle")


async def test_a_collector_signs_in_at_keycloak_lands_on_her_worklist_and_acts_under_her_name(
        stack, browser, oidc_url):
    page = await new_page(browser, stack)
    await _sign_in_at_keycloak(page, oidc_url, "olga")
    # Her group gives her the collector's page; her locale claim, French.
    assert page.url == f"{oidc_url}/worklist"
    assert await page.locator("html").get_attribute("lang") == "fr"
    assert await page.locator("h1").first.text_content() == "Ma liste de travail"
    assert "Olga Recouvreur (collector)" in await page.get_by_test_id("signed-in-as").text_content()
    page.errors.clear()  # type: ignore[attr-defined]  (Keycloak's own pages are not ours to judge)
    await check_accessibility(page, "oidc-worklist")
    await snapshot(page, stack, "oidc-worklist")

    # She logs a contact on an account: collections records her, by her provider name, as the collector.
    customer = list(stack.book["customers"].values())[2]
    await page.goto(f"{oidc_url}/accounts/{customer}")
    form = page.get_by_test_id("contact-form")
    await form.locator("select[name=kind]").select_option("email")
    await form.locator("select[name=outcome]").select_option("reached")
    await form.locator("textarea[name=note]").fill("Signed in through Keycloak")
    await form.get_by_test_id("log-contact").click()
    await page.wait_for_selector("[data-testid=saved]")
    async with httpx.AsyncClient(headers=stack.api, timeout=30) as c:
        contacts = (await c.get(f"{stack.urls['collections']}/v1/contacts", params={"customer_id": customer})).json()
    assert [(x["collector_id"], x["outcome"], x["note"]) for x in contacts["data"]
            if x["note"] == "Signed in through Keycloak"] == [("olga", "reached", "Signed in through Keycloak")]
    assert page.errors == []  # type: ignore[attr-defined]
    assert (await page.goto(f"{oidc_url}/disputes")).status == 403  # a collector's role, nothing more

    # The local password form is off: a hand-made POST is refused.
    anonymous = await new_page(browser, stack)
    refused = await anonymous.request.post(f"{oidc_url}/login", form={"username": "admin", "password": "x" * 12})
    assert refused.status == 403 and "Local sign-in is off" in await refused.text()

    # An admin signed in the same way sees Olga as a user the provider made, and no local user form.
    adam = await new_page(browser, stack)
    await _sign_in_at_keycloak(adam, oidc_url, "adam")
    await adam.goto(f"{oidc_url}/admin/users")
    row = adam.locator("tr[data-user='olga']")
    assert await row.locator("td[data-role]").get_attribute("data-role") == "collector"
    assert await adam.get_by_test_id("create-user-form").count() == 0
    assert await adam.locator("[data-testid=user-changes] td[data-change='created']").count() == 2


async def test_a_keycloak_user_with_no_mapped_group_is_refused_with_a_page_that_says_why(stack, browser, oidc_url):
    page = await new_page(browser, stack)
    await _sign_in_at_keycloak(page, oidc_url, "nora")
    assert "/oidc/callback" in page.url
    assert await page.locator("h1").text_content() == "You have no role in the workbench"
    detail = await page.get_by_test_id("error-detail").text_content()
    assert "nora" in detail and "sales" in detail and "collector" in detail
    await check_accessibility(page, "oidc-no-role")
    await snapshot(page, stack, "oidc-no-role")
    # No session: the workbench sends her back to sign in.
    await page.goto(f"{oidc_url}/worklist")
    assert "/login" in page.url

    # A callback that did not start in this browser (no state cookie, a made-up state) is refused too.
    forged = await page.request.get(f"{oidc_url}/oidc/callback?code=abc&state=made-up")
    assert forged.status == 400 and "did not start in this browser" in await forged.text()


async def test_signing_out_ends_the_keycloak_session_too_so_the_next_sign_in_asks_for_the_password(
        stack, browser, oidc_url):
    page = await new_page(browser, stack)
    await _sign_in_at_keycloak(page, oidc_url, "carlos")
    assert page.url == f"{oidc_url}/cash"
    logouts: list[str] = []
    page.on("request", lambda r: logouts.append(r.url) if "/protocol/openid-connect/logout" in r.url else None)

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(f"{oidc_url}/login")
    await page.wait_for_load_state("networkidle")
    # The workbench's session is over.
    await page.goto(f"{oidc_url}/cash")
    assert urlsplit(page.url).path == "/login"

    # Signing in again: Keycloak asks for the credentials (before RP-initiated logout, its own
    # session signed Carlos straight back in to /cash without them).
    await page.get_by_test_id("oidc-sign-in").click()
    await page.wait_for_url(lambda u: "/protocol/openid-connect/auth" in u or u == f"{oidc_url}/cash")
    await page.wait_for_load_state("networkidle")
    assert "/realms/ledgerline/protocol/openid-connect/auth" in page.url
    assert await page.locator("#username").is_visible() and await page.locator("#password").is_visible()

    # The sign-out went through Keycloak's end_session_endpoint once (no confirmation page: the
    # ID token names the session), with the ID token the sign-in got, kept server-side only.
    assert len(logouts) == 1
    query = {k: v[0] for k, v in parse_qs(urlsplit(logouts[0]).query).items()}
    assert query["client_id"] == CLIENT["clientId"]
    assert query["post_logout_redirect_uri"] == f"{oidc_url}/login"
    hint = query["id_token_hint"]
    assert hint.count(".") == 2
    assert all(hint not in c["value"] for c in await page.context.cookies())

    await page.locator("#username").fill("carlos")
    await page.locator("#password").fill("carlos-kc-pass-2026")
    await page.locator("#kc-login").click()
    await page.wait_for_url(f"{oidc_url}/cash")
