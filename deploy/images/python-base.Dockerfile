# A Python 3.11 base made without an image registry: Debian bookworm's python3 on the minbase
# that scripts/images.sh makes with mmdebstrap. Used as PYTHON_IMAGE only where the official
# python:3.11-slim cannot be pulled; the service Dockerfile works on either.
ARG BASE_IMAGE=ledgerline-local/debian:bookworm-minbase-v2
FROM ${BASE_IMAGE}

# Only what the services need at run time: python3, and ca-certificates for TLS to SMTP relays
# and the like; no compiler, no docs. python3-venv (ensurepip and its bundled pip and setuptools
# wheels, about 3 MB) is installed by the Dockerfile's build stage, which is discarded, so the
# runtime image built on this base does not carry it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log

ENV LANG=C.UTF-8
CMD ["python3"]
