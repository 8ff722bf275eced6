# The compose stack's OpenTelemetry Collector on the local minbase, where no registry answers:
# the binary scripts/ensure-otelcol.sh builds from the Go module proxy (deploy/otelcol/builder.yaml).
ARG BASE_IMAGE=ledgerline-local/debian:bookworm-minbase-v2
FROM ${BASE_IMAGE}
COPY otelcol /usr/local/bin/otelcol
USER 10001:10001
EXPOSE 4318
ENTRYPOINT ["/usr/local/bin/otelcol"]
