#!/usr/bin/env bash
# Local Apache Kafka 4.x for Ledgerline: one KRaft node (broker and controller in one JVM).
#
#   scripts/kafka.sh up       resolve jars (first time), format storage (first time), start,
#                             wait until the broker serves metadata, create the event topics
#   scripts/kafka.sh down     SIGTERM, then SIGKILL after 30 s
#   scripts/kafka.sh status   print state; exit 0 when running, 3 when not
#   scripts/kafka.sh libs     only resolve the jars into .local/kafka/libs
#
# Broker: PLAINTEXT://127.0.0.1:${LEDGERLINE_KAFKA_PORT:-29092}; controller 127.0.0.1:29093.
# The jars come from Maven Central through deploy/kafka/pom.xml; Java 17+ runs them.
# LEDGERLINE_STATE_DIR (default .local) holds the broker's data, logs, config and pid: another
# folder and other ports give a second, independent broker (the fault suite runs one). The jars
# stay in .local/kafka/libs, shared by every state folder.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BROKER_PORT="${LEDGERLINE_KAFKA_PORT:-29092}"
# The controller's address is written into the metadata log when storage is formatted:
# changing it later needs 'rm -rf .local/kafka/data'.
CONTROLLER_PORT="${LEDGERLINE_KAFKA_CONTROLLER_PORT:-29093}"
HOST=127.0.0.1
read -r -a HEAP_OPTS <<<"${LEDGERLINE_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
READY_TIMEOUT=120
STOP_TIMEOUT=30
TOPIC_PARTITIONS=3
TOPICS=(
    ledgerline.invoicing.events
    ledgerline.cash_application.events
    ledgerline.collections.events
    ledgerline.disputes.events
)

POM="$REPO_ROOT/deploy/kafka/pom.xml"
LOCAL_DIR="$(realpath -m "${LEDGERLINE_STATE_DIR:-$REPO_ROOT/.local}")"
KAFKA_DIR="$LOCAL_DIR/kafka"
LIBS_DIR="$REPO_ROOT/.local/kafka/libs"
LIBS_STAMP="$LIBS_DIR/.pom-sha256"
DATA_DIR="$KAFKA_DIR/data"
LOG_DIR="$KAFKA_DIR/logs"
CONFIG="$KAFKA_DIR/server.properties"
LOG4J_CONFIG="$KAFKA_DIR/log4j2.xml"
PID_FILE="$KAFKA_DIR/kafka.pid"
STDOUT_LOG="$LOG_DIR/stdout.log"
VENV_PYTHON="$REPO_ROOT/.venv/bin/python"

log() { printf '[kafka] %s\n' "$*"; }
die() { printf '[kafka] ERROR: %s\n' "$*" >&2; exit 1; }

# --- tools ---------------------------------------------------------------------------------

java_bin() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        echo "$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        command -v java
    else
        die "java not found: run scripts/bootstrap.sh (make setup)"
    fi
}

check_java() {
    local version
    version="$("$(java_bin)" -version 2>&1 | sed -nE '1s/.*version "([0-9]+)[^"]*".*/\1/p')"
    [[ -n "$version" && "$version" -ge 17 ]] \
        || die "Kafka 4 needs Java 17+, $(java_bin) is ${version:-unknown}: run scripts/bootstrap.sh"
}

# Maven's default cache (~/.m2) when it is writable, else one inside .local.
maven_repo_args() {
    if [[ -n "${LEDGERLINE_MAVEN_REPO:-}" ]]; then
        echo "-Dmaven.repo.local=$LEDGERLINE_MAVEN_REPO"
        return
    fi
    local m2="${HOME:-/nonexistent}/.m2"
    if mkdir -p "$m2/repository" 2>/dev/null && [[ -w "$m2/repository" ]]; then
        return
    fi
    echo "-Dmaven.repo.local=$LOCAL_DIR/m2"
}

ensure_libs() {
    local pom_sha
    pom_sha="$(sha256sum "$POM" | cut -d' ' -f1)"
    if [[ -f "$LIBS_STAMP" && "$(cat "$LIBS_STAMP")" == "$pom_sha" ]]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found: run scripts/bootstrap.sh (make setup)"
    log "resolving Kafka jars with Maven (deploy/kafka/pom.xml -> $LIBS_DIR)"
    local staging="$LIBS_DIR.staging"
    rm -rf "$staging"
    mkdir -p "$KAFKA_DIR" "$(dirname "$LIBS_DIR")"
    # shellcheck disable=SC2046  # maven_repo_args prints zero or one word
    if ! mvn -B -q -ntp -f "$POM" $(maven_repo_args) \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$staging" \
        >"$KAFKA_DIR/maven.log" 2>&1; then
        tail -n 40 "$KAFKA_DIR/maven.log" >&2
        die "Maven could not resolve the Kafka jars (full output: $KAFKA_DIR/maven.log)"
    fi
    rm -rf "$REPO_ROOT/deploy/kafka/target"
    ls "$staging"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar in $staging"
    rm -rf "$LIBS_DIR"
    mv "$staging" "$LIBS_DIR"
    printf '%s\n' "$pom_sha" >"$LIBS_STAMP"
    log "$(find "$LIBS_DIR" -name '*.jar' | wc -l) jars ready"
}

kafka_java() {  # runs a Kafka main class on the resolved classpath
    "$(java_bin)" "${HEAP_OPTS[@]}" -Dlog4j2.configurationFile="$LOG4J_CONFIG" \
        -Dkafka.logs.dir="$LOG_DIR" -cp "$LIBS_DIR/*" "$@"
}

# --- configuration -------------------------------------------------------------------------

write_config() {
    mkdir -p "$DATA_DIR" "$LOG_DIR"
    cat >"$CONFIG" <<EOF
# Written by scripts/kafka.sh on every 'up': edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$BROKER_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$BROKER_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR
num.partitions=$TOPIC_PARTITIONS
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF

    cat >"$LOG4J_CONFIG" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/kafka.sh. -->
<!-- Kafka logs its own shutdown from a JVM shutdown hook: log4j must not close first. -->
<Configuration status="WARN" name="ledgerline-kafka" shutdownHook="disable">
  <Properties>
    <Property name="pattern">[%d] %p %m (%c)%n</Property>
  </Properties>
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="${pattern}"/>
    </Console>
    <RollingFile name="FILE" fileName="${sys:kafka.logs.dir}/kafka.log"
                 filePattern="${sys:kafka.logs.dir}/kafka.log.%i">
      <PatternLayout pattern="${pattern}"/>
      <Policies>
        <SizeBasedTriggeringPolicy size="50 MB"/>
      </Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="WARN">
      <AppenderRef ref="STDOUT"/>
      <AppenderRef ref="FILE"/>
    </Root>
    <!-- Startup and shutdown milestones ("Kafka Server started", "shut down completed"). -->
    <Logger name="kafka.server.KafkaServer" level="INFO"/>
    <Logger name="kafka.server.KafkaRaftServer" level="INFO"/>
    <Logger name="kafka.server.BrokerServer" level="INFO"/>
    <Logger name="kafka.server.ControllerServer" level="INFO"/>
  </Loggers>
</Configuration>
EOF
}

format_storage_once() {
    if [[ -f "$DATA_DIR/meta.properties" ]]; then
        return 0
    fi
    local cluster_id
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    [[ -n "$cluster_id" ]] || die "kafka.tools.StorageTool random-uuid printed nothing"
    log "formatting storage in $DATA_DIR (cluster id $cluster_id, standalone KRaft quorum)"
    if ! kafka_java kafka.tools.StorageTool format --config "$CONFIG" --cluster-id "$cluster_id" \
        --standalone >"$LOG_DIR/format.log" 2>&1; then
        cat "$LOG_DIR/format.log" >&2
        die "formatting Kafka storage failed"
    fi
}

# --- process -------------------------------------------------------------------------------

is_our_broker() {  # $1: pid; true when it is a live kafka.Kafka started with our config
    local pid="$1" cmdline
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *" kafka.Kafka $CONFIG"* ]]
}

# Prints the broker's pid: from the pid file, or (pid file lost) the process started with
# exactly our config file.
broker_pid() {
    local pid
    if [[ -f "$PID_FILE" ]]; then
        pid="$(cat "$PID_FILE")"
        if is_our_broker "$pid"; then
            echo "$pid"
            return 0
        fi
    fi
    local proc
    for proc in /proc/[0-9]*; do
        pid="${proc#/proc/}"
        if is_our_broker "$pid"; then
            echo "$pid" >"$PID_FILE"
            echo "$pid"
            return 0
        fi
    done
    return 1
}

port_open() {  # $1: port
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

log_tail() {
    if [[ -s "$LOG_DIR/kafka.log" ]]; then
        echo "----- last lines of $LOG_DIR/kafka.log -----" >&2
        tail -n 25 "$LOG_DIR/kafka.log" >&2
    fi
    # The console copy of kafka.log also holds what the JVM says before log4j runs.
    if [[ -s "$STDOUT_LOG" ]]; then
        echo "----- last lines of $STDOUT_LOG other than log4j's -----" >&2
        grep -v '^\[[0-9]\{4\}-' "$STDOUT_LOG" | tail -n 15 >&2
    fi
    echo "-----" >&2
}

# Python with aiokafka (the project's own client) talks to the broker: list_topics proves the
# broker is up and serves metadata; 'ensure-topics' creates the missing event topics.
aiokafka_admin() {  # $1: check|ensure-topics
    "$VENV_PYTHON" - "$1" "$HOST:$BROKER_PORT" "$TOPIC_PARTITIONS" "${TOPICS[@]}" <<'PY'
import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

action, bootstrap, partitions, topics = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
TOPIC_ALREADY_EXISTS = 36
# The event topics are the published history: rebuilds replay them from offset 0, so nothing
# may expire (Kafka's default is 7 days).
RETENTION = {"retention.ms": "-1", "retention.bytes": "-1"}


async def main() -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 10)
        existing = set(await asyncio.wait_for(admin.list_topics(), 10))
        if action == "check":
            return 0
        missing = [t for t in topics if t not in existing]
        if missing:
            response = await asyncio.wait_for(
                admin.create_topics(
                    [NewTopic(name=t, num_partitions=partitions, replication_factor=1, topic_configs=RETENTION)
                     for t in missing]
                ),
                30,
            )
            for topic_error in response.topic_errors:
                name, code = topic_error[0], topic_error[1]
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    print(f"creating topic {name} failed: error {code} {topic_error[2:]}", file=sys.stderr)
                    return 1
            print("created topics: " + ", ".join(missing))
        # Topics created before (by an older script, or auto-created) get the retention too.
        current = await asyncio.wait_for(admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, configs=dict.fromkeys(RETENTION)) for t in topics]), 10)
        stale = []
        for response in current:
            for _code, _message, _type, name, entries in response.resources:
                values = {entry[0]: entry[1] for entry in entries}
                if any(values.get(k) != v for k, v in RETENTION.items()):
                    stale.append(name)
        if stale:
            results = await asyncio.wait_for(admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t, configs=RETENTION) for t in stale]), 10)
            for response in results:
                for code, message, _type, name in response.resources:
                    if code != 0:
                        print(f"setting retention of {name} failed: error {code} {message}", file=sys.stderr)
                        return 1
            print("infinite retention set on: " + ", ".join(stale))
        # A new topic's partitions need a moment to get a leader (error 5 until then).
        for _ in range(30):
            described = await asyncio.wait_for(admin.describe_topics(topics), 10)
            failing = [(t["topic"], t["error_code"]) for t in described if t["error_code"] != 0]
            if not failing:
                break
            await asyncio.sleep(0.5)
        else:
            print(f"topics not ready (topic, error code): {failing}", file=sys.stderr)
            return 1
        # The first consumer group makes the broker create __consumer_offsets (50 partitions);
        # do it now so that the first test's consumer does not wait for it.
        for attempt in range(60):
            try:
                await admin.find_coordinator("ledgerline-infra-warmup")
                return 0
            except Exception as exc:
                if attempt == 59:
                    print(f"group coordinator not available: {exc}", file=sys.stderr)
                    return 1
                await asyncio.sleep(0.5)
        return 1
    finally:
        await admin.close()


try:
    sys.exit(asyncio.run(main()))
except Exception as exc:  # not ready yet: the caller retries
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
PY
}

wait_ready() {  # $1: pid
    local pid="$1" started=$SECONDS
    [[ -x "$VENV_PYTHON" ]] || die ".venv missing: run scripts/bootstrap.sh (make setup)"
    until aiokafka_admin check 2>"$KAFKA_DIR/ready-check.err"; do
        if ! is_our_broker "$pid"; then  # exited (a zombie's cmdline is empty)
            log_tail
            die "the broker exited during startup"
        fi
        if (( SECONDS - started >= READY_TIMEOUT )); then
            cat "$KAFKA_DIR/ready-check.err" >&2
            log_tail
            die "the broker did not serve metadata on $HOST:$BROKER_PORT within ${READY_TIMEOUT}s"
        fi
        sleep 1
    done
    rm -f "$KAFKA_DIR/ready-check.err"
}

cmd_up() {
    check_java
    mkdir -p "$KAFKA_DIR"
    with_libs_lock

    local pid
    if pid="$(broker_pid)"; then
        log "already running (pid $pid); checking that it answers on $HOST:$BROKER_PORT"
    else
        local port
        for port in "$BROKER_PORT" "$CONTROLLER_PORT"; do
            port_open "$port" && die "port $port on $HOST is taken by another process (ss -ltnp | grep $port)"
        done
        write_config
        format_storage_once
        local jar
        jar="$(basename "$(printf '%s\n' "$LIBS_DIR"/kafka_2.13-*.jar | head -n1)" .jar)"
        log "starting Kafka ${jar#kafka_2.13-} on $HOST:$BROKER_PORT (logs: $LOG_DIR)"
        # setsid: the broker outlives this shell and the terminal; fd 9 is the lock, not its.
        setsid nohup "$(java_bin)" "${HEAP_OPTS[@]}" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
            -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J_CONFIG" \
            -Dkafka.logs.dir="$LOG_DIR" -cp "$LIBS_DIR/*" kafka.Kafka "$CONFIG" \
            >>"$STDOUT_LOG" 2>&1 </dev/null 9>&- &
        pid=$!
        echo "$pid" >"$PID_FILE"
    fi
    wait_ready "$pid"
    aiokafka_admin ensure-topics || { log_tail; die "could not create the event topics"; }
    log "ready: bootstrap servers $HOST:$BROKER_PORT (pid $pid), topics: ${TOPICS[*]}"
}

cmd_down() {
    local pid
    if ! pid="$(broker_pid)"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping (pid $pid, SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if (( SECONDS >= deadline )); then
            log "still running after ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
            break
        fi
        sleep 0.5
    done
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    if ! pid="$(broker_pid)"; then
        if [[ -f "$DATA_DIR/meta.properties" ]]; then
            log "stopped (data: $DATA_DIR)"
        else
            log "not initialised: run 'scripts/kafka.sh up'"
        fi
        return 3
    fi
    if [[ -x "$VENV_PYTHON" ]] && aiokafka_admin check 2>/dev/null; then
        log "running, pid $pid, serving metadata on $HOST:$BROKER_PORT"
    else
        log "running, pid $pid, but NOT answering on $HOST:$BROKER_PORT (see $LOG_DIR/kafka.log)"
        return 1
    fi
}

# One up/down at a time, so two concurrent 'make infra-up' cannot start two brokers.
with_lock() {
    mkdir -p "$LOCAL_DIR"
    exec 9>"$LOCAL_DIR/.kafka.lock"
    flock -w 180 9 || die "another scripts/kafka.sh is still running (lock $LOCAL_DIR/.kafka.lock)"
    "$@"
}

# The jars are shared by every state folder: resolving them takes a lock of their own.
with_libs_lock() {
    mkdir -p "$REPO_ROOT/.local"
    exec 8>"$REPO_ROOT/.local/.kafka-libs.lock"
    flock -w 600 8 || die "another scripts/kafka.sh is still resolving the jars"
    ensure_libs
    exec 8>&-
}

case "${1:-}" in
    up) with_lock cmd_up ;;
    down) with_lock cmd_down ;;
    status) cmd_status ;;
    libs) with_libs_lock ;;
    *)
        echo "usage: $0 {up|down|status|libs}" >&2
        exit 2
        ;;
esac
