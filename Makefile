SHELL := /bin/bash
PYTEST := .venv/bin/pytest
PYTHON := .venv/bin/python

.PHONY: run stop test test-workbench test-faults faults-infra-down test-unit test-integration test-e2e test-deploy test-platform test-k8s lint bench bench-platform bench-mechanisms bench-write profile-write bench-cash bench-reporting bench-projections bench-workbench setup infra-up infra-down infra-status lock schemas

# Everything on a fresh machine: tools, PostgreSQL, Kafka, migrations, and the five services,
# in open mode (no API keys; local development only: the script says so).
run: setup infra-up
	bash scripts/run.sh up --open

# Stop the services and the infrastructure.
stop:
	bash scripts/run.sh down
	bash scripts/infra.sh down

# The whole suite: unit, integration (real PostgreSQL and Kafka), deployment checks, end to end.
# No Docker needed: the tests marked `platform` run in `make test-platform`.
test: setup infra-up
	$(PYTEST) tests -q -p no:cacheprovider -m "not platform" --ignore=tests/workbench

# The workbench's browser tests (Playwright on Debian's chromium through the five real services,
# axe-core; about 5 minutes): run by .ci/run after the fault suite, outside the quick loop.
test-workbench: setup infra-up
	$(PYTEST) tests/workbench -q -p no:cacheprovider

test-unit: setup
	$(PYTEST) tests/unit -q

test-integration: setup infra-up
	$(PYTEST) tests/integration -q

test-e2e: setup infra-up
	$(PYTEST) tests/e2e -q

test-deploy: setup
	$(PYTEST) tests/deploy -q -m "not platform"

# The platform as ops teams run it (Docker; scripts/images.sh starts a daemon if none runs):
# every test under tests/deploy marked `platform` -- the service image, the compose stack with
# the README's flow and a trace through Kafka, and the Kubernetes flow. Images and tools are
# cached outside the clone (/var/cache/ledgerline), so a second run is much faster.
test-platform: setup
	bash scripts/images.sh prepare
	$(PYTEST) tests/deploy -q -p no:cacheprovider -m platform

# The platform on a real single-node Kubernetes cluster (root; Docker; Go for the cached
# binaries): scripts/k8s-cluster.sh, tests/deploy/test_kubernetes_cluster.py. Stage times in
# .local/k8s/timings.json. Also run by test-platform.
test-k8s: setup
	bash scripts/images.sh prepare
	$(PYTEST) tests/deploy/test_kubernetes_cluster.py -q -m platform -p no:cacheprovider
	@cat .local/k8s/timings.json .local/k8s/rolling-update.json 2>/dev/null || true

# Services never import each other; shared/ never imports a service (also run by `make test`).
lint: setup
	.venv/bin/lint-imports

# Throughput of the mechanisms beside their raw baselines, measured on this machine.
bench: setup infra-up
	$(PYTHON) -m bench.mechanisms
	$(PYTHON) -m bench.cash_application
	$(PYTHON) -m bench.reporting
	$(PYTHON) -m bench.workbench
	$(PYTHON) -m bench.projections

# The whole platform under load (issue 9): five services as processes, the load generator, every
# aim beside its measured value and its raw ceiling, the read models checked to the cent at the
# end (nonzero exit on a mismatch). About 6 minutes. BENCH_PLATFORM_ARGS: --instances 2 (two
# processes of every service), --profile (py-spy flame graphs); artifacts in
# .local/bench-artifacts/platform/. Results: docs/benchmarks.md, "Platform load benchmark".
bench-platform: setup infra-up
	$(PYTHON) -m bench.platform $(BENCH_PLATFORM_ARGS)

bench-mechanisms: setup infra-up
	$(PYTHON) -m bench.mechanisms

# The invoicing write path under load (bench/write_path.py): POST /v1/invoices with 32 clients
# (closed loop) and at 200/s (open loop), POST /v1/invoice-batches, RSS, and a minimal FastAPI +
# asyncpg endpoint as the ceiling, from one run.
bench-write: setup infra-up
	$(PYTHON) -m bench.write_path

# The same load with py-spy attached to the service: flame graphs (SVG and speedscope JSON) in
# artifacts/profiles/ (git-ignored; the ones docs/benchmarks.md discusses are in bench/profiles/).
profile-write: setup infra-up
	$(PYTHON) -m bench.write_path --profile artifacts/profiles --no-raw

bench-cash: setup infra-up
	$(PYTHON) -m bench.cash_application

bench-reporting: setup infra-up
	$(PYTHON) -m bench.reporting

# The workbench's first renders: a worklist of 5,000 accounts, an unapplied queue of 10,000
# receipts, through the real services (artifacts/bench/workbench.json; docs/benchmarks.md).
bench-workbench: setup infra-up
	$(PYTHON) -m bench.workbench
# Every service's live projection draining a realistic backlog (its real consumers) beside a
# plain consumer COPYing the same events; PROFILE=1 writes py-spy flame graphs to artifacts/profiles/.
bench-projections: setup infra-up
	$(PYTHON) -m bench.projections

# Python venv from requirements.lock, Java 17+, Maven and PostgreSQL binaries (apt-get as root).
setup:
	bash scripts/bootstrap.sh

# PostgreSQL on 127.0.0.1:25432 and Kafka on 127.0.0.1:29092, state in .local/ (see scripts/).
infra-up:
	bash scripts/infra.sh up

infra-down:
	bash scripts/infra.sh down

infra-status:
	bash scripts/infra.sh status

# Re-resolve the pinned dependency set from requirements.in.
lock:
	rm -rf .local/lockenv && python3 -m venv .local/lockenv
	.local/lockenv/bin/pip install -q -r requirements.in
	.local/lockenv/bin/pip freeze --exclude-editable > requirements.lock
	.local/lockenv/bin/python scripts/runtime_lock.py

# Re-export the event contracts' JSON Schemas after changing one.
schemas: setup
	rm -rf docs/events/schemas && $(PYTHON) -m shared.contracts export docs/events/schemas

# The fault suite (tests/faults, not part of `make test`): its own PostgreSQL and Kafka in
# .local/faults on ports 26432 and 30092/30093 (LEDGERLINE_FAULTS_*_PORT override them), the five
# services as processes under write load; Kafka and PostgreSQL stopped, services killed, a relay
# frozen, poison messages. Figures in artifacts/faults/. Never touches `make infra-up`'s.
test-faults: setup
	$(PYTEST) tests/faults -q -p no:cacheprovider

# Stop the fault suite's PostgreSQL and Kafka if a run was interrupted (the suite stops them).
faults-infra-down:
	LEDGERLINE_STATE_DIR="$${LEDGERLINE_FAULTS_STATE_DIR:-$(CURDIR)/.local/faults}" bash scripts/infra.sh down
