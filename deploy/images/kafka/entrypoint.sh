#!/bin/bash
# KAFKA_FOO_BAR=value -> foo.bar=value in server.properties (as the apache/kafka image does;
# KAFKA_HEAP_OPTS and KAFKA_OPTS are JVM options), format empty storage with CLUSTER_ID, start.
set -euo pipefail
config=/tmp/server.properties
: >"$config"
while IFS='=' read -r name value; do
    case "$name" in
        KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_VERSION) continue ;;
        KAFKA_*) key="${name#KAFKA_}"; key="${key,,}"; echo "${key//_/.}=$value" >>"$config" ;;
    esac
done < <(env)
log_dir="$(sed -n 's/^log\.dirs=//p' "$config")"
: "${CLUSTER_ID:?CLUSTER_ID is required}"
if [[ ! -f "${log_dir:-/var/lib/kafka/data}/meta.properties" ]]; then
    /opt/kafka/bin/kafka-storage.sh format --config "$config" --cluster-id "$CLUSTER_ID" --ignore-formatted
fi
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xmx512m} ${KAFKA_OPTS:-} -Dlog4j2.configurationFile=/opt/kafka/bin/log4j2.properties \
    -cp '/opt/kafka/libs/*' kafka.Kafka "$config"
