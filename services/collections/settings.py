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
