from pydantic_settings import SettingsConfigDict

from shared.settings import LOCAL_DB, ServiceSettings


class CashApplicationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGERLINE_CASH_APPLICATION_", extra="ignore")

    database_url: str = LOCAL_DB.format(context="cash_application")
    port: int = 8102
