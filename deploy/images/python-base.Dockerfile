# A Python 3.11 base made without an image registry: Debian bookworm's python3 on the minbase
# that scripts/images.sh makes with mmdebstrap. Used as PYTHON_IMAGE only where the official
# python:3.11-slim cannot be pulled; the service Dockerfile works on either.
ARG BASE_IMAGE=ledgerline-local/debian:bookworm-minbase-v2
FROM ${BASE_IMAGE}

# python3-venv brings ensurepip (the build stage makes a virtualenv); ca-certificates for TLS
# to SMTP relays and the like; no compiler, no docs.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log

ENV LANG=C.UTF-8
CMD ["python3"]
