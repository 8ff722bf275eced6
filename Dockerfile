# One image for all five Ledgerline services. The command picks the service and what it does:
#
#   docker run ledgerline services.invoicing serve      # HTTP API (+ relay/consumers by ROLE)
#   docker run ledgerline services.invoicing migrate    # apply the context's migrations, exit
#
# Build:  scripts/images.sh service   (tags ledgerline:<content hash>; see docs/deployment.md)
#    or:  docker build -t ledgerline:dev .
# No `# syntax=` line: the classic builder and BuildKit both build this file without fetching a
# frontend image, so it builds where no image registry answers (with a local PYTHON_IMAGE).
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz, and docker-compose.yml declares its own.

# Both stages must use the same interpreter: the virtualenv built in the first is copied into the
# second, and its bin/python links to /usr/local/bin/python3.11. Pin a digest in CI for
# reproducible builds (python:3.11-slim@sha256:...).
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

# The pinned runtime dependency set (requirements-runtime.lock, a subset of requirements.lock
# without the test tools). Every package in it ships a manylinux wheel for x86_64 and aarch64,
# so this stage needs no compiler.
ARG REQUIREMENTS=requirements-runtime.lock

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# binutils only to strip the extension modules below, and python3-venv only where the base's
# interpreter lacks ensurepip (Debian's python3, as on the locally made base; the official image
# has it). This stage is discarded, so neither reaches the runtime image. $packages is split into
# package names on purpose (SC2086).
# hadolint ignore=DL3008,SC2086
RUN packages=binutils \
    && if ! python -c 'import ensurepip' 2>/dev/null; then packages="$packages python3-venv"; fi \
    && apt-get update \
    && apt-get install -y --no-install-recommends $packages \
    && rm -rf /var/lib/apt/lists/* \
    && python -m venv /opt/ledgerline
ENV PATH=/opt/ledgerline/bin:$PATH

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when the lock file changes.
# build-ca.pem exists only when scripts/images.sh put it in the context (the machine's CAs, e.g. a
# TLS-intercepting proxy's); the [m] glob makes it optional. It stays in this discarded stage.
COPY ${REQUIREMENTS} build-ca.pe[m] /src/
RUN if [ -f /src/build-ca.pem ]; then export PIP_CERT=/src/build-ca.pem; fi \
    && pip install --require-virtualenv -r "/src/${REQUIREMENTS}"

# Then the project itself, as a regular (non-editable) install into site-packages, with no
# dependency resolution: the lock above is the whole set. pip compiles the .pyc files here,
# because the runtime container's root filesystem is read-only.
COPY pyproject.toml /src/
COPY shared /src/shared
COPY services /src/services
RUN if [ -f /src/build-ca.pem ]; then export PIP_CERT=/src/build-ca.pem; fi \
    && pip install --require-virtualenv --no-deps /src \
    # pip and setuptools are not needed to run the services; leave them behind.
    && pip uninstall --yes --require-virtualenv pip setuptools wheel \
    # Smaller without changing behaviour: extension modules lose their symbol tables (the
    # wheels' vendored *.libs are left as built), type stubs and C/Cython sources go.
    && find /opt/ledgerline -name '*.so' -not -path '*.libs/*' -exec strip --strip-unneeded {} + \
    && find /opt/ledgerline \( -name '*.pyi' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.c' \
         -o -name '*.h' -o -name '*.cpp' \) -delete

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="ledgerline" \
      org.opencontainers.image.description="Ledgerline accounts-receivable services (invoicing, cash_application, collections, disputes, reporting)" \
      org.opencontainers.image.licenses="Apache-2.0"

# The base image's own pip/setuptools/wheel are packaging tools the services never use (a Debian
# python3 base has none).
RUN if python -m pip --version >/dev/null 2>&1; then \
        python -m pip uninstall --yes --no-cache-dir pip setuptools wheel; fi \
    && groupadd --system --gid 10001 ledgerline \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin ledgerline

COPY --from=build /opt/ledgerline /opt/ledgerline

ENV PATH=/opt/ledgerline/bin:$PATH \
    VIRTUAL_ENV=/opt/ledgerline \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1

# An empty working directory: `python -m` puts the current directory first on sys.path.
WORKDIR /app

# Numeric user, so Kubernetes can verify runAsNonRoot without looking up a name.
USER 10001:10001

EXPOSE 8000

ENTRYPOINT ["python", "-m"]
CMD ["services.invoicing", "serve"]
