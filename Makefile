SHELL := /bin/bash

.PHONY: setup infra-up infra-down infra-status

# Python venv from requirements.lock, Java 17+, Maven and PostgreSQL binaries (apt-get as root).
setup:
	bash scripts/bootstrap.sh

# PostgreSQL on 127.0.0.1:55432 and Kafka on 127.0.0.1:59092, state in .local/ (see scripts/).
infra-up:
	bash scripts/infra.sh up

infra-down:
	bash scripts/infra.sh down

infra-status:
	bash scripts/infra.sh status
