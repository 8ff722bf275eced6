"""deploy/k8s base and overlays: they render with kustomize, every document validates (strict)
against the Kubernetes OpenAPI schemas kubernetes-validate ships, and they keep the promises
the services and the operators rely on."""
from __future__ import annotations

import base64
import copy
import re
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions

from tests.deploy.support import (
    CONTAINER_PORT,
    CONTEXTS,
    K8S,
    UID,
    containers,
    env_map,
    env_prefix,
    find,
    k8s_name,
    of_kind,
    pod_templates,
)

TARGETS = ("base", "overlays/dev", "overlays/production")
OVERLAYS = ("overlays/dev", "overlays/production")
# The oldest Kubernetes the manifests support (the kubectl on the development machines), and
# the newest schema the installed kubernetes-validate ships, to catch removed APIs early.
KUBERNETES_VERSIONS = ("1.32.0", all_versions()[-1])
CNPG_APP_SECRET_KEYS = {"username", "user", "password", "dbname", "host", "port", "pgpass", "uri",
                        "jdbc-uri", "fqdn-uri", "fqdn-jdbc-uri"}


PLATFORM_COMPONENTS = ("api", "worker", "migrations", "daily-run")
# The dev overlay's in-cluster infrastructure (plain StatefulSets, a topics Job, an SMTP sink).
DEV_INFRA_COMPONENTS = ("database", "kafka", "kafka-topics", "mail-sink")


def platform_templates(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The pod templates of the five services (api, worker, migrations, daily run)."""
    return [(k, t) for k, t in pod_templates(docs)
            if t["metadata"]["labels"].get("app.kubernetes.io/component") in PLATFORM_COMPONENTS]


def validation_errors(docs: list[dict[str, Any]], version: str) -> list[str]:
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{doc['metadata'].get('name')}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(exc.message)
    return errors


# --- schema validation ------------------------------------------------------------------------


def test_the_schemas_for_the_supported_versions_are_installed():
    assert "1.32.0" in all_versions()


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_every_document_validates_strictly(render, target, version):
    docs = render(target)
    assert docs, f"{target} rendered nothing"
    assert validation_errors(docs, version) == []


def test_strict_validation_rejects_an_unknown_field(render):
    """The validator is not a no-op: a misspelt field (a typo kubectl would reject) fails."""
    deployment = copy.deepcopy(find(render("base"), "Deployment", "invoicing-api"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    assert validation_errors([deployment], KUBERNETES_VERSIONS[0])


# --- what each service gets -------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("context", CONTEXTS)
def test_each_service_has_its_objects(render, target, context):
    docs = render(target)
    name = k8s_name(context)
    find(docs, "ServiceAccount", name)
    api = find(docs, "Deployment", f"{name}-api")
    worker = find(docs, "Deployment", f"{name}-worker")
    service = find(docs, "Service", name)
    pdb = find(docs, "PodDisruptionBudget", f"{name}-api")
    job = find(docs, "Job", f"{name}-migrate")

    api_labels = api["spec"]["template"]["metadata"]["labels"]
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    # The Service and the PDB cover the API pods and only them.
    assert selects(service["spec"]["selector"], api_labels)
    assert not selects(service["spec"]["selector"], worker_labels)
    assert selects(pdb["spec"]["selector"]["matchLabels"], api_labels)
    assert not selects(pdb["spec"]["selector"]["matchLabels"], worker_labels)
    assert selects(api["spec"]["selector"]["matchLabels"], api_labels)
    assert selects(worker["spec"]["selector"]["matchLabels"], worker_labels)

    # The Service's target port is the container's named port, 8000.
    ports = {p["name"]: p["containerPort"] for p in api["spec"]["template"]["spec"]["containers"][0]["ports"]}
    target_port = service["spec"]["ports"][0]["targetPort"]
    assert ports[target_port] == CONTAINER_PORT

    for workload in (api, worker, job):
        assert workload["spec"]["template"]["spec"]["serviceAccountName"] == name


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("context", CONTEXTS)
def test_roles_commands_and_env_prefix(render, target, context):
    docs = render(target)
    name, prefix = k8s_name(context), env_prefix(context)
    for role in ("api", "worker"):
        deployment = find(docs, "Deployment", f"{name}-{role}")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = env_map(container)
        assert container["args"] == [f"services.{context}", "serve"]
        assert env[f"{prefix}ROLE"]["value"] == role
        # The service's default host is loopback: in a pod it must listen on every interface.
        assert env[f"{prefix}HOST"]["value"] == "0.0.0.0"
        assert int(env[f"{prefix}PORT"]["value"]) == container["ports"][0]["containerPort"] == CONTAINER_PORT
    job = find(docs, "Job", f"{name}-migrate")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["args"] == [f"services.{context}", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")

    for kind_name, template in platform_templates(docs):
        if template["metadata"]["labels"].get("app.kubernetes.io/name") != name:
            continue
        for c in template["spec"]["containers"]:
            env = env_map(c)
            assert {f"{prefix}DATABASE_URL", f"{prefix}KAFKA_BOOTSTRAP_SERVERS"} <= env.keys(), kind_name
            stray = [k for k in env if k.startswith("LEDGERLINE_") and not k.startswith(prefix)]
            assert stray == [], f"{kind_name} sets another service's settings: {stray}"


def _settings_fields(context: str) -> set[str]:
    """The fields of the context's own settings class (ServiceSettings plus its additions)."""
    import importlib

    from shared.settings import ServiceSettings

    module = importlib.import_module(f"services.{context}.settings")
    (cls,) = [v for v in vars(module).values()
              if isinstance(v, type) and issubclass(v, ServiceSettings) and v is not ServiceSettings]
    return {f.upper() for f in cls.model_fields}


def test_the_env_names_are_settings_the_services_read(render):
    """Each LEDGERLINE_<CONTEXT>_<FIELD> set in the manifests is a field of that context's settings."""
    fields = {ctx: _settings_fields(ctx) for ctx in CONTEXTS}
    for kind_name, template in platform_templates(render("base")):
        for c in containers(template):
            for key in env_map(c):
                if key.startswith("LEDGERLINE_"):
                    ctx = next(ctx for ctx in CONTEXTS if key.startswith(env_prefix(ctx)))
                    field = key.removeprefix(env_prefix(ctx))
                    assert field in fields[ctx], f"{kind_name}: {key} is not a setting ({sorted(fields[ctx])})"


def test_the_daily_dunning_run_is_scheduled_once_at_a_time(render):
    docs = render("base")
    cron = find(docs, "CronJob", "collections-daily-run")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (c,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["services.collections", "daily-run"]
    env = env_map(c)
    assert {"LEDGERLINE_COLLECTIONS_SMTP_HOST", "LEDGERLINE_COLLECTIONS_DATABASE_URL"} <= env.keys()


@pytest.mark.parametrize("target", TARGETS)
def test_workers_run_one_replica_and_apis_are_probed(render, target):
    docs = render(target)
    for deployment in of_kind(docs, "Deployment"):
        role = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        if role not in PLATFORM_COMPONENTS:
            continue
        if role == "worker":
            assert deployment["spec"]["replicas"] == 1
        (c,) = deployment["spec"]["template"]["spec"]["containers"]
        name = deployment["metadata"]["name"]
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz", name
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        named_ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = c[probe]["httpGet"]["port"]
            assert named_ports.get(port, port) == CONTAINER_PORT, f"{name} {probe}"
        # The startup probe, not the liveness probe, covers a slow start (migrations).
        startup = c["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, name


# --- security and resources -------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_pod_runs_non_root_read_only_and_bounded(render, target):
    templates = platform_templates(render(target))
    # api, worker and migrations Job per context, and collections' daily-run CronJob
    assert len(templates) == 3 * len(CONTEXTS) + 1
    for kind_name, template in templates:
        spec = template["spec"]
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, kind_name
        assert pod_sc["runAsUser"] == UID, kind_name
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", kind_name
        assert spec["automountServiceAccountToken"] is False, kind_name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), kind_name
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in containers(template):
            where = f"{kind_name} container {c['name']}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert sc.get("runAsUser", UID) == UID, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert not sc["capabilities"].get("add"), where
            assert not sc.get("privileged"), where
            assert sc.get("seccompProfile", pod_sc["seccompProfile"])["type"] == "RuntimeDefault", where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= c["resources"][bound].keys(), f"{where}: resources.{bound}"
            # A read-only root needs a writable /tmp (tempfile, uvicorn).
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get("/tmp") in tmp_volumes, f"{where}: no emptyDir at /tmp"


@pytest.mark.parametrize("target", TARGETS)
def test_service_accounts_mount_no_token(render, target):
    for sa in of_kind(render(target), "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False, sa["metadata"]["name"]


# --- configuration and secrets ----------------------------------------------------------------

CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


@pytest.mark.parametrize("target", TARGETS)
def test_database_credentials_come_from_the_operator_secret(render, target):
    docs = render(target)
    for kind_name, template in platform_templates(docs):
        context = next(c for c in CONTEXTS if template["metadata"]["labels"]["app.kubernetes.io/name"] == k8s_name(c))
        expected_secret = f"ledgerline-{k8s_name(context)}-db-app"
        for c in template["spec"]["containers"]:
            env = env_map(c)
            password = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
            assert password == {"name": expected_secret, "key": "password"}, kind_name
            for item in env.values():
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] == f"ledgerline-{k8s_name(context)}-api-keys":
                    # Closed by default: the keys Secret is required (tested below).
                    assert item["name"] == f"{env_prefix(context)}API_KEYS", kind_name
                elif ref and ref["name"] != expected_secret:
                    # Other credentials (an SMTP relay's) are the operator's own, optional Secret.
                    assert ref["name"].startswith(f"ledgerline-{k8s_name(context)}-") and ref.get("optional"), \
                        f"{kind_name}: {item['name']} reads {ref['name']}"
                elif ref:
                    assert ref["key"] in CNPG_APP_SECRET_KEYS, f"{kind_name}: {item['name']} key {ref['key']}"
                value = str(item.get("value", ""))
                assert not CREDENTIALS_IN_URL.search(value), f"{kind_name}: {item['name']} has credentials inline"
                if "PASSWORD" in item["name"].upper():
                    assert "value" not in item, f"{kind_name}: {item['name']} is a literal"
            url = env[f"{env_prefix(context)}DATABASE_URL"]["value"]
            assert url.startswith("postgresql+asyncpg://"), kind_name


def test_the_base_holds_no_secret_material(render):
    docs = render("base")
    assert of_kind(docs, "Secret") == []
    for cm in of_kind(docs, "ConfigMap"):
        for key, value in cm.get("data", {}).items():
            assert "password" not in key.lower(), key
            assert not CREDENTIALS_IN_URL.search(value), key
    for path in (K8S / "base").glob("*.yaml"):
        text = path.read_text()
        assert "secretGenerator" not in text, path.name
        assert not re.search(r"^\s*kind:\s*Secret\s*$", text, re.M), path.name
        assert not CREDENTIALS_IN_URL.search(text), path.name


@pytest.mark.parametrize("target", TARGETS)
def test_shared_config_comes_from_the_generated_configmap(render, target):
    docs = render(target)
    (config,) = [cm for cm in of_kind(docs, "ConfigMap") if cm["metadata"]["name"].startswith("ledgerline-config")]
    for kind_name, template in platform_templates(docs):
        for c in template["spec"]["containers"]:
            for item in c.get("env", []):
                ref = item.get("valueFrom", {}).get("configMapKeyRef")
                if not ref:
                    continue
                # kustomize rewrote the reference to the hashed name.
                assert ref["name"] == config["metadata"]["name"], kind_name
                assert ref.get("optional") or ref["key"] in config["data"], f"{kind_name}: {ref['key']}"
            kafka = env_map(c)[next(k for k in env_map(c) if k.endswith("_KAFKA_BOOTSTRAP_SERVERS"))]
            assert kafka["valueFrom"]["configMapKeyRef"]["key"] == "kafka-bootstrap-servers", kind_name


# --- labels, overlays -------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_common_labels(render, target):
    docs = render(target)
    for doc in docs:
        if doc["kind"] == "Namespace":
            continue
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ledgerline", doc["metadata"]["name"]
    for kind_name, template in pod_templates(docs):
        labels = template["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "ledgerline", kind_name
        allowed = PLATFORM_COMPONENTS + (DEV_INFRA_COMPONENTS if target == "overlays/dev" else ())
        assert labels["app.kubernetes.io/component"] in allowed, kind_name


@pytest.mark.parametrize("target", OVERLAYS)
def test_overlays_pin_a_namespace_and_an_image_tag(render, target):
    docs = render(target)
    (namespace,) = of_kind(docs, "Namespace")
    ns = namespace["metadata"]["name"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == ns, f"{doc['kind']}/{doc['metadata']['name']}"
    images = {c["image"] for _, t in platform_templates(docs) for c in containers(t)}
    assert len(images) == 1, images  # one image for every service
    (image,) = images
    repository, _, tag = image.rpartition(":")
    assert repository and "/" not in tag and tag not in ("", "latest"), image


def test_dev_overlay_is_small(render):
    docs = render("overlays/dev")
    for deployment in of_kind(docs, "Deployment"):
        assert deployment["spec"]["replicas"] == 1, deployment["metadata"]["name"]


def test_production_overlay_autoscales_apis_and_isolates_pods(render):
    docs = render("overlays/production")
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler")}
    for context in CONTEXTS:
        api = find(docs, "Deployment", f"{k8s_name(context)}-api")
        # The HPA owns the replica count; a replicas field would be reset on every apply.
        assert "replicas" not in api["spec"]
        hpa = hpas[api["metadata"]["name"]]
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert len(hpas) == len(CONTEXTS)  # APIs only: workers are not autoscaled

    policies = of_kind(docs, "NetworkPolicy")
    deny = [p for p in policies if not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    selected = deny[0]["spec"]["podSelector"]["matchLabels"]
    for kind_name, template in pod_templates(docs):
        assert all(template["metadata"]["labels"].get(k) == v for k, v in selected.items()), kind_name


# --- closed by default, network policies, the dev overlay's infrastructure -------------------


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("context", CONTEXTS)
def test_every_service_process_requires_its_api_keys_secret(render, target, context):
    """Closed by default: api and worker pods read LEDGERLINE_<CONTEXT>_API_KEYS from the
    Secret ledgerline-<context>-api-keys, which is not optional, so without it no pod starts."""
    docs = render(target)
    for role in ("api", "worker"):
        (c,) = find(docs, "Deployment", f"{k8s_name(context)}-{role}")["spec"]["template"]["spec"]["containers"]
        keys = env_map(c)[f"{env_prefix(context)}API_KEYS"]
        ref = keys["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"ledgerline-{k8s_name(context)}-api-keys", "key": "api-keys"}, role
        assert "value" not in keys
        assert not any(k.endswith("ALLOW_OPEN") or k == "LEDGERLINE_OPEN_MODE" for k in env_map(c)), role
    assert not [s for s in of_kind(docs, "Secret") if s["metadata"]["name"].endswith("-api-keys")]


@pytest.mark.parametrize("target", OVERLAYS)
def test_network_policies_admit_only_the_platform_and_the_ingress(render, target):
    docs = render(target)
    policies = {p["metadata"]["name"]: p for p in of_kind(docs, "NetworkPolicy")}
    deny = policies["ledgerline-default-deny"]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny["spec"].get("ingress") and not deny["spec"].get("egress")
    # Every pod of the overlay is under the default deny.
    selected = deny["spec"]["podSelector"]["matchLabels"]
    for kind_name, template in pod_templates(docs):
        assert all(template["metadata"]["labels"].get(k) == v for k, v in selected.items()), kind_name
    for policy in policies.values():
        for rule in policy["spec"].get("ingress", []):
            for peer in rule["from"]:
                # Never "any namespace": a peer names the platform's pods or a labelled namespace.
                assert peer.get("namespaceSelector") != {}, policy["metadata"]["name"]
                assert "ipBlock" not in peer, policy["metadata"]["name"]
    api = policies["ledgerline-api-ingress"]["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "ledgerline"}}} in api
    assert {"namespaceSelector": {"matchLabels": {"ledgerline.io/ingress": "allowed"}}} in api


def test_dev_overlay_runs_postgres_and_kafka_as_plain_statefulsets(render):
    docs = render("overlays/dev")
    postgres, kafka = find(docs, "StatefulSet", "postgres"), find(docs, "StatefulSet", "kafka")
    assert postgres["spec"]["template"]["spec"]["containers"][0]["image"] == "postgres:17"
    assert kafka["spec"]["template"]["spec"]["containers"][0]["image"] == "apache/kafka:4.1.1"
    for sts in (postgres, kafka):
        assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
        service = find(docs, "Service", sts["spec"]["serviceName"])
        labels = sts["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
        spec = sts["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= c["resources"]["limits"].keys()
    # The services find them by the Service names, and the databases the init script creates.
    (config,) = [cm for cm in of_kind(docs, "ConfigMap") if cm["metadata"]["name"].startswith("ledgerline-config")]
    assert config["data"]["kafka-bootstrap-servers"] == "kafka:9092"
    (initdb,) = [cm for cm in of_kind(docs, "ConfigMap") if cm["metadata"]["name"].startswith("ledgerline-postgres-initdb")]
    script = "".join(initdb["data"].values())
    for context in CONTEXTS:
        secret = find(docs, "Secret", f"ledgerline-{k8s_name(context)}-db-app")
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert data["host"] == "postgres" and data["port"] == "5432"
        assert f"CREATE DATABASE {data['dbname']} " in script
        assert data["dbname"] == f"ledgerline_{context}"
    topics_job = find(docs, "Job", "kafka-topics")
    command = " ".join(topics_job["spec"]["template"]["spec"]["containers"][0]["args"])
    for context in ("invoicing", "cash_application", "collections", "disputes"):
        assert f"ledgerline.{context}.events" in command
