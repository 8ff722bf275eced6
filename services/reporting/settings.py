from pydantic_settings import SettingsConfigDict

from shared.settings import LOCAL_DB, ServiceSettings


class ReportingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGERLINE_REPORTING_", extra="ignore")

    database_url: str = LOCAL_DB.format(context="reporting")
    port: int = 8105
