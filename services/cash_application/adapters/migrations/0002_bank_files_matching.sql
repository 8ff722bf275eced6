-- Bank and remittance file imports, auto-matching, write-offs, reversals and returns.

-- Small-balance write-offs (this context's SmallBalanceWrittenOff) and collections' approved
-- write-offs both lower an open balance: open balance = total - credited - applied - written_off.
ALTER TABLE open_items ADD COLUMN IF NOT EXISTS written_off_amount numeric(20, 4) NOT NULL DEFAULT 0;

-- Keyed facts so a redelivered or replayed write-off lowers the balance once.
CREATE TABLE IF NOT EXISTS open_item_write_offs (
    write_off_id text PRIMARY KEY,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    currency char(3) NOT NULL,
    amount numeric(20, 4) NOT NULL,
    source text NOT NULL,  -- small_balance (this context) | collections (WriteOffApproved)
    payment_id text,
    reason_code text,
    recorded_on date NOT NULL
);
CREATE INDEX IF NOT EXISTS open_item_write_offs_invoice ON open_item_write_offs (invoice_id);
CREATE INDEX IF NOT EXISTS open_item_write_offs_payment ON open_item_write_offs (payment_id);

-- The customer master as invoicing publishes it: names for payer-name matching.
CREATE TABLE IF NOT EXISTS customers (
    customer_id text PRIMARY KEY,
    name text NOT NULL,
    currency char(3) NOT NULL
);

-- Aliases learned from manual decisions: a payer name or bank account -> the customer.
CREATE TABLE IF NOT EXISTS payer_aliases (
    kind text NOT NULL CHECK (kind IN ('name', 'account')),
    alias text NOT NULL,  -- normalised name or account
    customer_id text NOT NULL,
    learned_from text NOT NULL,  -- the payment whose manual application taught it
    learned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, alias)
);

-- Applications can be reversed (manual reversal, re-application, returned payment).
ALTER TABLE payment_applications ADD COLUMN IF NOT EXISTS application_id text;
ALTER TABLE payment_applications ADD COLUMN IF NOT EXISTS reversed_on date;
ALTER TABLE payment_applications ADD COLUMN IF NOT EXISTS reversal_reason text;
CREATE INDEX IF NOT EXISTS payment_applications_application ON payment_applications (payment_id, application_id);

ALTER TABLE payments ADD COLUMN IF NOT EXISTS returned_on date;
ALTER TABLE payments ADD COLUMN IF NOT EXISTS return_reason_code text;
ALTER TABLE payments ADD COLUMN IF NOT EXISTS written_off_amount numeric(20, 4) NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS payments_value_date ON payments (value_date);

-- Where an imported payment came from and what the matcher proposed: written by the import (not
-- derived from events, so a rebuild of the payments read model keeps it).
CREATE TABLE IF NOT EXISTS payment_sources (
    payment_id text PRIMARY KEY,
    import_id text NOT NULL,
    position text NOT NULL,
    bank_reference text,
    payer_name text,
    payer_account text,
    remittance_text text,
    match_reason text,
    suggestions jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS payment_sources_bank_reference ON payment_sources (bank_reference)
    WHERE bank_reference IS NOT NULL;

-- One row per imported file; content_hash makes the same file twice one import.
CREATE TABLE IF NOT EXISTS bank_imports (
    import_id text PRIMARY KEY,
    content_hash text NOT NULL UNIQUE,
    file_format text NOT NULL,
    file_name text,
    result jsonb,
    imported_at timestamptz NOT NULL DEFAULT now()
);

-- A statement (account + statement id/sequence + date) is imported once, whatever file brings it.
CREATE TABLE IF NOT EXISTS bank_statements (
    statement_key text PRIMARY KEY,
    import_id text NOT NULL REFERENCES bank_imports (import_id),
    file_format text NOT NULL,
    account text,
    statement_date date NOT NULL,
    currency char(3) NOT NULL,
    opening_balance numeric(20, 4),
    closing_balance numeric(20, 4)
);

-- Every statement line, for the daily reconciliation of posted receipts against the bank.
CREATE TABLE IF NOT EXISTS statement_lines (
    import_id text NOT NULL REFERENCES bank_imports (import_id),
    position text NOT NULL,
    account text,
    value_date date NOT NULL,
    currency char(3) NOT NULL,
    amount numeric(20, 4) NOT NULL,
    direction text NOT NULL,
    bank_reference text,
    payer_name text,
    payment_id text,  -- the payment this line posted (receipt) or returned (return)
    kind text NOT NULL,  -- receipt | return | other
    PRIMARY KEY (import_id, position)
);
CREATE INDEX IF NOT EXISTS statement_lines_date ON statement_lines (value_date, account);
