#!/usr/bin/env bash
# One-shot topic creation for docker-compose.yml, run in the apache/kafka image. Idempotent.
# The broker has auto.create.topics.enable=false, so a typo in a topic name fails loudly
# instead of creating a stray topic.
set -euo pipefail

: "${BOOTSTRAP_SERVERS:?}" "${TOPICS:?}" "${PARTITIONS:=3}" "${REPLICATION_FACTOR:=1}"
kafka_topics="${KAFKA_TOPICS_SH:-/opt/kafka/bin/kafka-topics.sh}"

for topic in $TOPICS; do
    # retention.ms=-1 and retention.bytes=-1: the event topics are the published history; a read
    # model can be rebuilt by replaying a topic from offset 0.
    "$kafka_topics" --bootstrap-server "$BOOTSTRAP_SERVERS" --create --if-not-exists \
        --topic "$topic" --partitions "$PARTITIONS" --replication-factor "$REPLICATION_FACTOR" \
        --config retention.ms=-1 --config retention.bytes=-1
done
for topic in $TOPICS; do
    # Fails (and so fails this one-shot service) if the topic is not there.
    description="$("$kafka_topics" --bootstrap-server "$BOOTSTRAP_SERVERS" --describe --topic "$topic")"
    echo "${description%%$'\n'*}"
done
echo "topics ready: $TOPICS"
