"""The platform on a real Kubernetes cluster (`make test-platform`, not `make test`).

scripts/k8s-cluster.sh starts a single-node cluster from pinned, cached binaries; the images
scripts/images.sh builds are loaded into its containerd; the dev overlay is applied unchanged
but for the image names (a kustomization on top of it, as an ops engineer would write); then:
the migrations Jobs complete and every Deployment is Ready; the README's example flow runs
through the Services (from this host through kube-proxy, the cluster's own Service network);
a rolling update of invoicing-api under steady traffic fails no request; and the production
overlay and the operators' resources pass a server-side dry run.

Stage times go to .local/k8s/timings.json (and the test log)."""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.support import CONTEXTS, K8S, REPO, k8s_name

pytestmark = [pytest.mark.platform, pytest.mark.timeout(3600)]

NAMESPACE = "ledgerline-dev"
STATE = Path(os.environ.get("LEDGERLINE_K8S_STATE", REPO / ".local" / "k8s"))
OVERLAY = REPO / ".local" / "k8s-test-overlay"
TIMINGS = STATE / "timings.json"
OPERATOR_CRDS = Path(__file__).with_name("operator-crds.yaml")
ROLLED = "invoicing-api"


def sh(args: list[str], *, timeout: float = 1800, env: dict[str, str] | None = None, check: bool = True,
       stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # The cluster is reached directly, never through a proxy a CI machine may configure.
    base = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout, input=stdin,
                          env={**base, **(env or {})})
    if check and proc.returncode != 0:
        pytest.fail(f"{shlex.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}{proc.stdout[-2000:]}",
                    pytrace=False)
    return proc


@dataclass
class Timings:
    stages: dict[str, float] = field(default_factory=dict)

    def measure(self, stage: str, fn: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return fn()
        finally:
            self.stages[stage] = round(time.monotonic() - started, 1)
            TIMINGS.parent.mkdir(parents=True, exist_ok=True)
            TIMINGS.write_text(json.dumps(self.stages, indent=2) + "\n")
            print(f"[k8s] {stage}: {self.stages[stage]} s", flush=True)


@dataclass
class Cluster:
    kubectl: str
    kubeconfig: str

    def run(self, *args: str, timeout: float = 600, check: bool = True, stdin: str | None = None) -> str:
        return sh([self.kubectl, "--kubeconfig", self.kubeconfig, *args], timeout=timeout, check=check,
                  stdin=stdin).stdout

    def json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.run(*args, "-o", "json"))


def images() -> dict[str, str]:
    """LEDGERLINE_IMAGE, LEDGERLINE_POSTGRES_IMAGE, LEDGERLINE_KAFKA_IMAGE (KEY=image lines)."""
    out = sh(["bash", "scripts/images.sh", "platform"], timeout=3000).stdout
    built = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    # Where a registry answers, images.sh leaves the infrastructure to the official images.
    built.setdefault("LEDGERLINE_POSTGRES_IMAGE", "postgres:17")
    built.setdefault("LEDGERLINE_KAFKA_IMAGE", "apache/kafka:4.1.1")
    return built


@pytest.fixture(scope="module")
def timings() -> Timings:
    return Timings()


@pytest.fixture(scope="module")
def cluster(timings: Timings) -> Iterator[Cluster]:
    timings.measure("binaries", lambda: (sh(["bash", "scripts/k8s-binaries.sh"], timeout=3600),
                                         sh(["bash", "scripts/k8s-binaries.sh", "coredns"], timeout=3600)))
    built = timings.measure("images", images)
    try:
        timings.measure("cluster start", lambda: sh(["bash", "scripts/k8s-cluster.sh", "up"], timeout=900))
        env = dict(line.split("=", 1) for line in sh(["bash", "scripts/k8s-cluster.sh", "env"]).stdout.split())
        timings.measure("image load", lambda: sh(["bash", "scripts/k8s-cluster.sh", "load",
                                                  built["LEDGERLINE_IMAGE"], built["LEDGERLINE_POSTGRES_IMAGE"],
                                                  built["LEDGERLINE_KAFKA_IMAGE"]], timeout=900))
        c = Cluster(kubectl=env["KUBECTL"], kubeconfig=env["KUBECONFIG"])
        c.images = built  # type: ignore[attr-defined]
        yield c
    finally:
        if os.environ.get("LEDGERLINE_K8S_KEEP") != "1":
            timings.measure("cluster stop", lambda: sh(["bash", "scripts/k8s-cluster.sh", "down"], timeout=600,
                                                       check=False))


# --- the platform, applied ----------------------------------------------------------------------

def _api_key() -> str:
    """A random key per cluster (kept with its certificates, so a rerun on a kept cluster
    matches the Secrets its pods read); the Secrets hold only its hash."""
    path = STATE / "pki" / "platform-test-api-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


API_KEY = ""


def api_key_secret(context: str) -> str:
    """The Secret a service reads its keys from (shape documented in docs/deployment.md)."""
    keys = {f"sha256:{hashlib.sha256(API_KEY.encode()).hexdigest()}":
            {"actor": "platform-test", "scopes": [f"{context}:*", f"{context}:admin"]}}
    return json.dumps({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": f"ledgerline-{k8s_name(context)}-api-keys", "namespace": NAMESPACE},
        "stringData": {"api-keys": json.dumps(keys)},
    })


def write_overlay(images: dict[str, str]) -> None:
    """A kustomization over the dev overlay that only names the images (as an ops team would)."""
    def split(image: str) -> tuple[str, str]:
        name, _, tag = image.rpartition(":")
        return (name, tag) if name and "/" not in tag else (image, "latest")

    entries = []
    for name, key in (("ledgerline", "LEDGERLINE_IMAGE"), ("postgres", "LEDGERLINE_POSTGRES_IMAGE"),
                      ("apache/kafka", "LEDGERLINE_KAFKA_IMAGE")):
        new_name, tag = split(images[key])
        entries.append({"name": name, "newName": new_name, "newTag": tag})
    # The PostgreSQL image's own postgres user (999 in the official image; Debian's package
    # picks its own uid in a local stand-in): the pod runs as that uid, non-root.
    uid, gid = sh(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh",
                   images["LEDGERLINE_POSTGRES_IMAGE"], "-c", "id -u postgres; id -g postgres"]).stdout.split()
    patch = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "postgres"},
             "spec": {"template": {"spec": {"securityContext": {
                 "runAsUser": int(uid), "runAsGroup": int(gid), "fsGroup": int(gid)}}}}}
    OVERLAY.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(K8S / "overlays" / "dev", OVERLAY)
    (OVERLAY / "kustomization.yaml").write_text(json.dumps({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [relative], "images": entries,
        "patches": [{"patch": json.dumps(patch)}]}, indent=2) + "\n")


def wait_ready(c: Cluster) -> None:
    c.run("-n", NAMESPACE, "wait", "--for=condition=complete", "job", "-l",
          "app.kubernetes.io/component=migrations", "--timeout=900s", timeout=960)
    for context in CONTEXTS:
        for role in ("api", "worker"):
            c.run("-n", NAMESPACE, "rollout", "status", f"deployment/{k8s_name(context)}-{role}",
                  "--timeout=600s", timeout=660)


@pytest.fixture(scope="module")
def platform(cluster: Cluster, timings: Timings) -> dict[str, str]:
    """Applies the dev overlay; returns each context's Service URL (ClusterIP, via kube-proxy)."""
    global API_KEY
    API_KEY = _api_key()
    write_overlay(cluster.images)  # type: ignore[attr-defined]

    def apply() -> None:
        cluster.run("apply", "-f", str(K8S / "overlays" / "dev" / "namespace.yaml"))
        for context in CONTEXTS:
            cluster.run("apply", "-f", "-", stdin=api_key_secret(context))
        cluster.run("apply", "-k", str(OVERLAY), timeout=300)
        wait_ready(cluster)

    try:
        timings.measure("apply to Ready", apply)
    except BaseException:
        print(cluster.run("-n", NAMESPACE, "get", "pods,jobs,pvc", "-o", "wide", check=False))
        print(cluster.run("-n", NAMESPACE, "get", "events", "--sort-by=.lastTimestamp", check=False)[-6000:])
        raise
    urls = {}
    for context in CONTEXTS:
        svc = cluster.json("-n", NAMESPACE, "get", "service", k8s_name(context))
        ip, port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["port"]
        assert ip.startswith("10.96."), ip  # the cluster's Service range, reached through kube-proxy
        urls[context] = f"http://{ip}:{port}"
    return urls


def client() -> httpx.Client:
    return httpx.Client(timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}, trust_env=False)


def eventually(check: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s: {what}", pytrace=False)
        time.sleep(1)


# --- tests ----------------------------------------------------------------------------------------


def test_the_services_are_closed_without_a_key(platform):
    for context, url in platform.items():
        r = httpx.get(f"{url}/v1/openapi.json", timeout=30, trust_env=False)
        assert r.status_code == 200, context  # docs stay open
        paths = [p for p in r.json()["paths"] if "{" not in p and p.startswith("/v1/")]
        r = httpx.get(f"{url}{paths[0]}", timeout=30, trust_env=False)
        assert r.status_code == 401, (context, paths[0], r.text)


def test_the_readme_flow_through_the_services(platform, cluster, timings):
    urls = platform

    def flow() -> None:
        with client() as c:
            r = c.post(f"{urls['invoicing']}/v1/customers", headers={"Idempotency-Key": "c-1"}, json={
                "customer_id": "ACME", "name": "Acme Corp", "currency": "USD", "payment_terms_days": 30,
                "credit_limit": "50000.00"})
            assert r.status_code in (200, 201), r.text
            r = c.post(f"{urls['invoicing']}/v1/invoices", headers={"Idempotency-Key": "i-1"}, json={
                "customer_id": "ACME", "invoice_number": "INV-1001", "issue_date": "2024-03-01",
                "lines": [{"description": "Widgets", "quantity": "10", "unit_price": "99.50"}]})
            assert r.status_code in (200, 201), r.text
            invoice_id = r.json()["invoice_id"]

            def aging_total(as_of: str, expected: str) -> bool:
                a = c.get(f"{urls['reporting']}/v1/reports/aging", params={"as_of": as_of, "currency": "USD"})
                return a.status_code == 200 and a.json()["total"] == expected
            # invoicing -> Kafka -> reporting and cash_application
            eventually(lambda: aging_total("2024-04-15", "995.00"), "reporting ages the invoice")
            eventually(lambda: c.get(f"{urls['cash_application']}/v1/open-items/{invoice_id}").status_code == 200,
                       "cash application knows the open item")

            r = c.put(f"{urls['collections']}/v1/customers/ACME/profile",
                      json={"email": "ap@acme.example", "time_zone": "America/New_York"})
            assert r.status_code in (200, 201), r.text
            r = c.post(f"{urls['collections']}/v1/dunning-runs", headers={"Idempotency-Key": "r-1"},
                       json={"as_of": "2024-04-15", "run_at": "2024-04-15T15:00:00Z"})
            assert r.status_code in (200, 201), r.text

            lockbox = ("receipt_id,value_date,amount,currency,payer_name,invoice_reference\n"
                       "CHK-77,2024-04-20,995.00,USD,ACME CORPORATION,1001\n")
            r = c.post(f"{urls['cash_application']}/v1/bank-files", params={"format": "csv"},
                       headers={"Idempotency-Key": "f-1"}, content=lockbox.encode())
            assert r.status_code in (200, 201), r.text
            # cash_application -> Kafka -> reporting: paid on its value date (2024-04-20).
            eventually(lambda: aging_total("2024-04-30", "0.00"), "the lockbox receipt pays the invoice in reporting")
            assert aging_total("2024-04-15", "995.00")  # still open before the payment
            inv = c.get(f"{urls['invoicing']}/v1/invoices/{invoice_id}")
            eventually(lambda: c.get(f"{urls['invoicing']}/v1/invoices/{invoice_id}").json().get("paid_amount")
                       == "995.00", f"invoicing sees the payment ({inv.text[:300]})")

        def mailed() -> bool:
            logs = cluster.run("-n", NAMESPACE, "logs", "deployment/mail-sink", "--tail=-1", check=False)
            return "ap@acme.example" in logs
        eventually(mailed, "the dunning email reaches the mail sink", timeout=240)

    timings.measure("flow", flow)


def test_a_rolling_update_under_traffic_fails_no_request(platform, cluster, timings):
    url = platform["invoicing"]
    stop = threading.Event()
    outcomes: dict[str, int] = {"ok": 0}
    failures: list[str] = []

    def traffic() -> None:
        # A bounded client loop: a write and a read per round, a new connection per request (as
        # through a load balancer), until told to stop or 5000 requests.
        n = 0
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {API_KEY}"},
                          limits=httpx.Limits(max_keepalive_connections=0), trust_env=False) as c:
            while not stop.is_set() and n < 5000:
                n += 1
                key = uuid.uuid4().hex
                try:
                    r = c.post(f"{url}/v1/invoices", headers={"Idempotency-Key": key}, json={
                        "customer_id": "ACME", "invoice_number": f"RU-{key[:12]}", "issue_date": "2024-05-01",
                        "lines": [{"description": "Rolling", "quantity": "1", "unit_price": "1.00"}]})
                    if r.status_code not in (200, 201):
                        failures.append(f"POST {r.status_code} {r.text[:200]}")
                        continue
                    outcomes["ok"] += 1
                    r = c.get(f"{url}/v1/invoices/{r.json()['invoice_id']}")
                    if r.status_code != 200:
                        failures.append(f"GET {r.status_code} {r.text[:200]}")
                        continue
                    outcomes["ok"] += 1
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")

    def rolling_update() -> None:
        before = cluster.json("-n", NAMESPACE, "get", "pods", "-l",
                              "app.kubernetes.io/name=invoicing,app.kubernetes.io/component=api")["items"]
        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        time.sleep(5)  # steady traffic before the update
        cluster.run("-n", NAMESPACE, "rollout", "restart", f"deployment/{ROLLED}")
        cluster.run("-n", NAMESPACE, "rollout", "status", f"deployment/{ROLLED}", "--timeout=600s", timeout=660)
        # Until the old pod is gone, it may still be draining: keep the traffic going past that.
        old = {p["metadata"]["name"] for p in before}
        eventually(lambda: not old & {p["metadata"]["name"] for p in cluster.json(
            "-n", NAMESPACE, "get", "pods", "-l",
            "app.kubernetes.io/name=invoicing,app.kubernetes.io/component=api")["items"]},
            "the old invoicing-api pod is gone", timeout=120)
        time.sleep(5)
        stop.set()
        thread.join(timeout=60)

    timings.measure("rolling update", rolling_update)
    print(f"[k8s] rolling update: {outcomes['ok']} requests answered, {len(failures)} failed", flush=True)
    (STATE / "rolling-update.json").write_text(json.dumps({"ok": outcomes["ok"], "failed": len(failures)}) + "\n")
    assert failures == []
    assert outcomes["ok"] >= 50, outcomes  # the traffic really spanned the update


def test_the_production_overlay_passes_a_server_side_dry_run(cluster, platform, timings):
    """The operators' kinds need their CRDs in the API server: operator-crds.yaml holds minimal
    structural CRDs for the four kinds deploy/k8s/platform uses (documented as such)."""
    def dry_run() -> str:
        cluster.run("apply", "--server-side", "-f", str(OPERATOR_CRDS))
        cluster.run("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
        # The namespace must exist for namespaced objects to be dry-run into it.
        cluster.run("apply", "-f", str(K8S / "overlays" / "production" / "namespace.yaml"))
        out = cluster.run("apply", "--dry-run=server", "-k", str(K8S / "overlays" / "production"))
        out += cluster.run("apply", "--dry-run=server", "-n", "ledgerline", "-k", str(K8S / "platform"))
        return out

    out = timings.measure("production dry run", dry_run)
    assert "deployment.apps/invoicing-api created (server dry run)" in out, out
    assert "kafka.kafka.strimzi.io/ledgerline created (server dry run)" in out, out
    assert "cluster.postgresql.cnpg.io/ledgerline-reporting-db created (server dry run)" in out, out
    # Nothing of it was created.
    assert cluster.run("-n", "ledgerline", "get", "deployments,kafkas,clusters.postgresql.cnpg.io",
                       "-o", "name").strip() == ""
    # A typo the real API server rejects is rejected (the dry run validates, it is not a no-op).
    broken = cluster.run("kustomize", str(K8S / "overlays" / "production")).replace(
        "readinessProbe:", "readinessProbee:", 1)
    proc = sh([cluster.kubectl, "--kubeconfig", cluster.kubeconfig, "apply", "--dry-run=server",
               "--validate=strict", "-f", "-"], stdin=broken, check=False)
    assert proc.returncode != 0 and "readinessProbee" in proc.stderr, proc.stderr
