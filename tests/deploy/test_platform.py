"""deploy/k8s/platform: the Strimzi and CloudNativePG resources. Their CRDs are not part of the
Kubernetes schemas, so these tests check apiVersion/kind and the cross-references the services
depend on (topic names, the Kafka bootstrap address, the generated database Secrets)."""
from __future__ import annotations

from tests.deploy.support import CONTEXTS, PUBLISHING_CONTEXTS, containers, env_map, find, k8s_name, of_kind, pod_templates, topic

KNOWN_KINDS = {
    ("kafka.strimzi.io/v1beta2", "Kafka"),
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"),
    ("postgresql.cnpg.io/v1", "Cluster"),
}


def test_platform_holds_only_operator_resources(render):
    docs = render("platform")
    assert {(d["apiVersion"], d["kind"]) for d in docs} == KNOWN_KINDS
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names))
    for doc in docs:
        assert doc["spec"], f"{doc['kind']}/{doc['metadata']['name']} has an empty spec"


def test_operator_resources_stay_out_of_base_and_overlays(render):
    for target in ("base", "overlays/dev", "overlays/production"):
        groups = {d["apiVersion"].split("/")[0] for d in render(target)}
        assert not groups & {"kafka.strimzi.io", "postgresql.cnpg.io"}, target


def test_kafka_is_kraft_with_a_broker_pool(render):
    docs = render("platform")
    (kafka,) = of_kind(docs, "Kafka")
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    pools = [p for p in of_kind(docs, "KafkaNodePool")
             if p["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]]
    assert {"controller", "broker"} <= {role for p in pools for role in p["spec"]["roles"]}
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False


def test_the_four_event_topics(render):
    docs = render("platform")
    (kafka,) = of_kind(docs, "Kafka")
    brokers = sum(p["spec"]["replicas"] for p in of_kind(docs, "KafkaNodePool") if "broker" in p["spec"]["roles"])
    topics = {t["spec"]["topicName"]: t for t in of_kind(docs, "KafkaTopic")}
    assert set(topics) == {topic(c) for c in PUBLISHING_CONTEXTS}
    for name, t in topics.items():
        assert t["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"], name
        assert t["spec"]["partitions"] == 3, name
        assert 1 <= t["spec"]["replicas"] <= brokers, name
        assert int(t["spec"]["config"]["min.insync.replicas"]) < t["spec"]["replicas"], name


def test_the_services_find_kafka_at_the_strimzi_bootstrap_service(render):
    (kafka,) = of_kind(render("platform"), "Kafka")
    plain = next(listener for listener in kafka["spec"]["kafka"]["listeners"] if not listener["tls"])
    expected = f"{kafka['metadata']['name']}-kafka-bootstrap:{plain['port']}"
    (config,) = [cm for cm in of_kind(render("base"), "ConfigMap") if cm["metadata"]["name"].startswith("ledgerline-config")]
    assert config["data"]["kafka-bootstrap-servers"] == expected


def test_one_postgres_cluster_per_context_provides_the_secrets_the_pods_read(render):
    clusters = {c["metadata"]["name"]: c for c in of_kind(render("platform"), "Cluster")}
    assert len(clusters) == len(CONTEXTS)
    for context in CONTEXTS:
        cluster = find(list(clusters.values()), "Cluster", f"ledgerline-{k8s_name(context)}-db")
        assert cluster["spec"]["bootstrap"]["initdb"]["database"] == f"ledgerline_{context}"
        assert cluster["spec"]["instances"] >= 1

    # CloudNativePG names the application Secret "<cluster>-app".
    provided = {f"{name}-app" for name in clusters}
    for kind_name, template in pod_templates(render("base")):
        for c in containers(template):
            for item in env_map(c).values():
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"].endswith("-api-keys"):
                    continue  # the operator's own Secret of API-key hashes (docs/deployment.md)
                if ref and not ref.get("optional"):
                    assert ref["name"] in provided, f"{kind_name}: {item['name']} reads {ref['name']}"
