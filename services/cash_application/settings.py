from decimal import Decimal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import LOCAL_DB, ServiceSettings


class CashApplicationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGERLINE_CASH_APPLICATION_", extra="ignore")

    database_url: str = LOCAL_DB.format(context="cash_application")
    port: int = 8102
    # Matching: results at or above the threshold are applied without a person; below it they go
    # to the unapplied-cash queue with suggestions.
    auto_apply_threshold: Decimal = Decimal("0.85")
    # A difference within both limits is written off as a small balance; beyond them it is a
    # short pay (disputes opens a deduction).
    tolerance_absolute: Decimal = Decimal("5.00")
    tolerance_percent: Decimal = Decimal("1.0")
    # The currency of files that do not state one (BAI2 without a currency code, EDI 820, CSV).
    default_currency: str = "USD"
    # Named CSV import profiles: {"name": {"columns": {field: header}, "date_format": "%d/%m/%Y",
    # "decimal_separator": ",", "delimiter": ";"}}; "default" maps every field to its own name.
    csv_profiles: dict[str, dict] = {}
    # A bank file's body is refused (413) past this size, before it is read into memory.
    max_file_bytes: int = 20_000_000
    # Processes that parse bank files, so a large file never holds the event loop (health checks
    # and other requests are answered meanwhile). 0 parses in the request's process (tests, CLI).
    parse_workers: int = 1
    # The scheduling priority (nice, 0-19) of those processes, which also match a large file's
    # chunks: a bank import's CPU yields to the API's requests and the other services sharing
    # the host; on an idle host it changes nothing.
    import_worker_nice: int = Field(default=10, ge=0, le=19)
    # The column of a card processor's payout report holding the invoice number the ERP put on
    # the charge (per processor; POST /v1/card-payouts?invoice_column= overrides it per file).
    card_invoice_columns: dict[str, str] = {"stripe": "payment_metadata[invoice_number]",
                                            "adyen": "Merchant Reference"}
    # A file with more receipts than this imports in chunks of this many, each committed with the
    # import's progress (resumable after a crash: send the same file again); smaller files post
    # in one transaction, all or nothing. 1,000 measured fastest and smallest on the 100,000-receipt
    # bench (71 s and 773 MB; 2,000: 78 s, 806 MB; 5,000: 83 s, 909 MB; 500: 81 s, 760 MB): a
    # chunk's matching costs more than in proportion to its size (docs/benchmarks.md).
    import_chunk_receipts: int = 1000
    # Processes that read, match and build a chunked import's chunks in turn (chunk n in the n-th
    # modulo this), so the next chunks are ready while one is written: with one, the loop waited
    # for it about half its time on the 100,000-receipt bench. Each holds the import's customer
    # side (on that bench about 100 MB); the ones beyond the first are started for an import of
    # at least `import_parallel_min_receipts` receipts and stopped when it ends, so a service
    # that imports smaller files keeps one process's memory.
    import_match_processes: int = Field(default=2, ge=1, le=8)
    import_parallel_min_receipts: int = Field(default=20_000, ge=1)
