from decimal import Decimal

from pydantic_settings import SettingsConfigDict

from shared.settings import LOCAL_DB, ServiceSettings


class InvoicingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGERLINE_INVOICING_", extra="ignore")

    database_url: str = LOCAL_DB.format(context="invoicing")
    port: int = 8101
    # Adjustments above this amount (in the invoice's currency) wait for a second person's approval.
    adjustment_approval_limit: Decimal = Decimal("1000.00")
