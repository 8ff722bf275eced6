from decimal import Decimal

from pydantic import Field

from pydantic_settings import SettingsConfigDict

from shared.settings import LOCAL_DB, ServiceSettings


class InvoicingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGERLINE_INVOICING_", extra="ignore")

    database_url: str = LOCAL_DB.format(context="invoicing")
    port: int = 8101
    # Adjustments above this amount (in the invoice's currency) wait for a second person's approval.
    adjustment_approval_limit: Decimal = Decimal("1000.00")

    # Payment instructions printed on invoices (with each invoice's RF creditor reference).
    payee_name: str = "Ledgerline Demo Ltd"
    payee_iban: str | None = "GB33BUKB20201555555555"
    payee_bic: str | None = "BUKBGB22"
    # Invoices and credit memos emailed by the delivery outbox (as collections sends notices).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_from: str = "Accounts Receivable <ar@ledgerline.local>"
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout_seconds: float = 10.0
    smtp_max_attempts: int = Field(default=5, ge=1, le=50)
    document_delivery_interval_seconds: float = Field(default=5.0, gt=0)
    # Statements of account: their content (and PDF) is reporting's, fetched over its API when a
    # statement delivery is sent or picked up; monthly statement runs are queued every interval.
    reporting_url: str = "http://127.0.0.1:8105"
    reporting_api_key: str | None = None
    reporting_timeout_seconds: float = Field(default=30.0, gt=0)
    statement_run_interval_seconds: float = Field(default=300.0, gt=0)
