#!/bin/bash
# The apache/kafka image's command-line tools this stack uses, by the name they are called.
set -euo pipefail
case "$(basename "$0")" in
    kafka-topics.sh) main=org.apache.kafka.tools.TopicCommand ;;
    kafka-broker-api-versions.sh) main=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    kafka-storage.sh) main=kafka.tools.StorageTool ;;
    *) main="$1"; shift ;;
esac
exec java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile=/opt/kafka/bin/log4j2.properties \
    -Dlog4j2.level=WARN -cp '/opt/kafka/libs/*' "$main" "$@"
