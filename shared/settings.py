"""Settings by environment variables, one prefix per service (LEDGERLINE_<CONTEXT>_...)."""
from __future__ import annotations

import os
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

# The local infrastructure of scripts/infra.sh; its ports lie below the kernel's ephemeral range
# (32768-60999) so that no outgoing connection can take them while a server restarts.
LOCAL_PG_PORT = os.environ.get("LEDGERLINE_PG_PORT", "25432")
LOCAL_DB = f"postgresql+asyncpg://ledgerline:ledgerline@127.0.0.1:{LOCAL_PG_PORT}/ledgerline_{{context}}"
LOCAL_KAFKA = f"127.0.0.1:{os.environ.get('LEDGERLINE_KAFKA_PORT', '29092')}"


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set env_prefix and their defaults."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str
    kafka_bootstrap_servers: str = LOCAL_KAFKA
    # all: API + relay + consumers in one process (local, compose); api: HTTP only;
    # worker: relay + consumers only (Kubernetes runs api and worker Deployments).
    role: Literal["all", "api", "worker"] = "all"
    host: str = "127.0.0.1"
    port: int = 8000
    migrate_on_start: bool = True
    # Connections kept open per process (API, relay and consumers share them). No overflow: an
    # overflow connection is closed when returned to a full pool and reopened at the next burst,
    # a churn (connect, TLS attempt, authentication) the write path's profile showed under 32
    # clients; the maximum per process is the same 20 as the former 10 + 10 overflow.
    db_pool_size: int = 20
    db_pool_overflow: int = 0
    # A session idle inside a transaction this long is ended by PostgreSQL, releasing its locks: a
    # frozen or partitioned process must not block the instances that carry on (0 = never).
    db_idle_in_transaction_timeout_seconds: float = 15.0
    consumer_max_attempts: int = 5
    # /readyz: a consumer partition further behind than this is not ready.
    consumer_max_lag: int = 10_000
    # The relay lease's time to live: a frozen leader is replaced within about 1.2 times this.
    relay_lease_seconds: float = 10.0
    # /readyz: a relay leader whose oldest unpublished event is older than this is not ready.
    relay_max_backlog_seconds: float = 60.0
    log_level: str = "INFO"
    # Topics are <prefix>.<context>.events and consumer groups <prefix>.<consumer>; another
    # prefix gives an isolated platform on a shared broker (the end-to-end tests use one).
    topic_prefix: str = "ledgerline"
    # JSON map of SHA-256 key hashes to {actor, scopes} (see shared/auth.py). Without keys the
    # service refuses to start unless open mode is asked for: <PREFIX>ALLOW_OPEN=true for one
    # service, or LEDGERLINE_OPEN_MODE=true for every service (local development only).
    api_keys: str | None = None
    # ... or a file holding that JSON: a mounted Secret (compose secret, Kubernetes Secret volume).
    api_keys_file: str | None = None
    allow_open: bool = False
    # SIGTERM: stop accepting, let in-flight requests finish for up to this long, then stop the
    # relay and consumers (which commit their offsets) and exit.
    shutdown_grace_seconds: float = 20.0

    def resolved_api_keys(self) -> str | None:
        """The configured keys' JSON: api_keys, else the content of api_keys_file (which must then
        exist: a missing Secret must stop the service, never open it)."""
        if self.api_keys:
            return self.api_keys
        if self.api_keys_file:
            with open(self.api_keys_file, encoding="utf-8") as f:
                return f.read()
        return None

    def open_mode_requested(self) -> bool:
        return self.allow_open or os.environ.get("LEDGERLINE_OPEN_MODE", "").strip().lower() in ("1", "true", "yes")
