from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import LOCAL_DB, ServiceSettings


class DisputesSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGERLINE_DISPUTES_", extra="ignore")

    database_url: str = LOCAL_DB.format(context="disputes")
    port: int = 8104
    # Attachments (proof of delivery, pricing agreements) are kept in PostgreSQL up to this size.
    attachment_max_bytes: int = 5 * 1024 * 1024
    # Open disputes past their reason code's due date are escalated by every worker this often
    # (POST /v1/dispute-escalations runs the same escalation on demand, e.g. as of another date).
    escalation_interval_seconds: float = Field(default=3600.0, gt=0)
