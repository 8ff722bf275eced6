import json
from datetime import time
from decimal import Decimal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import LOCAL_DB, ServiceSettings


class CollectionsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGERLINE_COLLECTIONS_", extra="ignore")

    database_url: str = LOCAL_DB.format(context="collections")
    port: int = 8103
    # Days after the promise date in which a payment still keeps the promise (bank value dates
    # lag the customer's payment run by a day or two).
    promise_grace_days: int = Field(default=2, ge=0, le=30)
    # Days after an installment's due date before it counts as missed.
    installment_grace_days: int = Field(default=3, ge=0, le=30)

    # Outgoing mail for email notices (a local sink by default: scripts/mail_sink.py).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_from: str = "Accounts Receivable <ar@ledgerline.local>"
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout_seconds: float = 10.0
    # A notice whose email failed this many times is marked failed (and listed) instead of retried.
    smtp_max_attempts: int = Field(default=5, ge=1, le=50)
    # Worker processes retry pending emails (after an SMTP outage) this often.
    email_retry_interval_seconds: float = Field(default=60.0, gt=0, le=86_400)

    # A daily run "as of" a past day happens at this UTC time of that day (quiet hours are
    # judged against it); a run as of today uses the clock's time.
    daily_run_time_utc: time = time(10, 0)
    # Who receives escalations that do not name anyone.
    escalation_manager: str = "ar-manager"
    # Largest write-off each approver role may approve, in the write-off's currency; null: no
    # limit. A role not listed approves nothing.
    write_off_limits: str = '{"manager": "5000", "controller": "50000", "cfo": null}'

    def write_off_limit_map(self) -> dict[str, Decimal | None]:
        raw = json.loads(self.write_off_limits)
        return {role: None if limit is None else Decimal(str(limit)) for role, limit in raw.items()}
