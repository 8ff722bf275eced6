"""Settings by environment variables, one prefix per service (LEDGERLINE_<CONTEXT>_...)."""
from __future__ import annotations

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_DB = "postgresql+asyncpg://ledgerline:ledgerline@127.0.0.1:55432/ledgerline_{context}"
LOCAL_KAFKA = "127.0.0.1:59092"


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
    db_pool_size: int = 10
    consumer_max_attempts: int = 5
    log_level: str = "INFO"
    # Topics are <prefix>.<context>.events and consumer groups <prefix>.<consumer>; another
    # prefix gives an isolated platform on a shared broker (the end-to-end tests use one).
    topic_prefix: str = "ledgerline"
    # JSON map of SHA-256 key hashes to {actor, scopes}; empty = open API (see shared/auth.py).
    api_keys: str | None = None
