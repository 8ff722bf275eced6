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
    # OIDC sign-in (docs/workbench.md): set the issuer and the local password form is off; people
    # sign in at the provider (authorization code flow with PKCE) and their role comes from a claim.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_client_secret_file: str | None = None
    # The workbench's address as people's browsers reach it; the callback is <this>/oidc/callback
    # (registered at the provider as the client's redirect URI).
    oidc_redirect_base_url: str | None = None
    oidc_scopes: str = "openid profile email"
    # The claim holding the person's groups or roles (a dotted path reaches into objects, e.g.
    # realm_access.roles) and which of its values gives which workbench role (JSON). Unmapped:
    # the role names themselves.
    oidc_role_claim: str = "groups"
    oidc_role_mapping: dict[str, str] = {}
    oidc_username_claim: str = "preferred_username"
    oidc_provider_name: str = ""  # shown on the sign-in button, e.g. "Keycloak" or "Entra ID"
    oidc_timeout_seconds: float = 10.0

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    def resolved_oidc_client_secret(self) -> str | None:
        return _secret(self.oidc_client_secret, self.oidc_client_secret_file)

    def oidc_redirect_uri(self) -> str:
        return f"{(self.oidc_redirect_base_url or '').rstrip('/')}/oidc/callback"

    def oidc_post_logout_redirect_uri(self) -> str:
        """Where the provider sends the browser after signing out there: the login page."""
        return f"{(self.oidc_redirect_base_url or '').rstrip('/')}/login"

    def resolved_api_key(self) -> str | None:
        return _secret(self.api_key, self.api_key_file)


def _secret(value: str | None, file: str | None) -> str | None:
    """A secret given as is, else read from its file (a mounted Kubernetes Secret), else None."""
    if value:
        return value
    if file:
        with open(file, encoding="utf-8") as f:
            return f.read().strip()
    return None
