"""The workbench's settings (LEDGERLINE_WORKBENCH_...): its own database (users, sessions), where
the five services answer and the API key it calls them with."""
from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import LOCAL_DB


class WorkbenchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGERLINE_WORKBENCH_", extra="ignore")

    database_url: str = LOCAL_DB.format(context="workbench")
    host: str = "127.0.0.1"
    port: int = 8106
    migrate_on_start: bool = True
    log_level: str = "INFO"
    db_pool_size: int = 5
    # The five services (the workbench is their client like any other).
    invoicing_url: str = "http://127.0.0.1:8101"
    cash_application_url: str = "http://127.0.0.1:8102"
    collections_url: str = "http://127.0.0.1:8103"
    disputes_url: str = "http://127.0.0.1:8104"
    reporting_url: str = "http://127.0.0.1:8105"
    # The workbench's own key to the services (scopes <context>:read/write and `delegate`, so
    # the person acting is the events' actor). None: the services run in open mode (make run).
    api_key: str | None = None
    api_key_file: str | None = None
    service_timeout_seconds: float = 30.0
    # Session cookies: Secure when served over HTTPS (compose and Kubernetes behind TLS say so).
    secure_cookies: bool = False
    session_hours: float = 10.0
    # `make run` seeds one user per role (README lists them); never in production.
    seed_demo_users: bool = False
    # Where the manager's page links the reporting dashboard (a URL people's browsers reach).
    dashboard_url: str | None = None
    # Optional: the day the workbench asks the services about (tests on a fixed book); else today.
    as_of: str | None = None

    def resolved_api_key(self) -> str | None:
        if self.api_key:
            return self.api_key
        if self.api_key_file:
            with open(self.api_key_file, encoding="utf-8") as f:
                return f.read().strip()
        return None
