# A stand-in for the official apache/kafka image where no registry answers: Debian bookworm's
# JRE on the local minbase with the Kafka jars Maven resolves (scripts/images.sh puts them in
# libs/), and the interface docker-compose.yml uses: KAFKA_* environment -> server.properties,
# CLUSTER_ID formats empty storage, /opt/kafka/bin/kafka-topics.sh and
# kafka-broker-api-versions.sh.
ARG BASE_IMAGE=ledgerline-local/debian:bookworm-minbase-v2
FROM ${BASE_IMAGE}

# The JRE's postinst links its man page: the minbase has no man directories.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*

ARG KAFKA_VERSION
LABEL org.apache.kafka.version=${KAFKA_VERSION}
COPY libs/ /opt/kafka/libs/
COPY entrypoint.sh kafka-run-class.sh log4j2.properties /opt/kafka/bin/
RUN ln -s kafka-run-class.sh /opt/kafka/bin/kafka-topics.sh \
    && ln -s kafka-run-class.sh /opt/kafka/bin/kafka-broker-api-versions.sh \
    && ln -s kafka-run-class.sh /opt/kafka/bin/kafka-storage.sh \
    && mkdir -p /var/lib/kafka/data
EXPOSE 9092
ENTRYPOINT ["/opt/kafka/bin/entrypoint.sh"]
