-- Deductions as retailers take them (issue 11): invoice numbers to find a report's invoices,
-- who works each dispute, the retailer's own codes and references, the validity decision and
-- what the re-bill recovered; the customers' code mappings and the report import profiles.
ALTER TABLE invoice_references ADD COLUMN IF NOT EXISTS invoice_number text;
ALTER TABLE invoice_references ADD COLUMN IF NOT EXISTS rebill_of_deduction text;
CREATE INDEX IF NOT EXISTS invoice_references_number ON invoice_references (customer_id, invoice_number);

ALTER TABLE disputes
    ADD COLUMN IF NOT EXISTS owner text,
    ADD COLUMN IF NOT EXISTS team text,
    ADD COLUMN IF NOT EXISTS customer_reason_code text,
    ADD COLUMN IF NOT EXISTS external_reference text,
    ADD COLUMN IF NOT EXISTS rebill_amount numeric(20, 4),
    ADD COLUMN IF NOT EXISTS rebill_invoice_id text,
    ADD COLUMN IF NOT EXISTS recovered_amount numeric(20, 4) NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX IF NOT EXISTS disputes_external_reference ON disputes (customer_id, external_reference)
    WHERE external_reference IS NOT NULL;

-- Cash applied to invoices (PaymentApplied +, PaymentUnapplied -, keyed by application): what
-- re-bill invoices recovered. Kept for every invoice: cash may arrive before the re-bill's InvoiceIssued.
CREATE TABLE IF NOT EXISTS rebill_collections (
    application_id text PRIMARY KEY,
    invoice_id text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    value_date date NOT NULL
);
CREATE INDEX IF NOT EXISTS rebill_collections_invoice ON rebill_collections (invoice_id);

CREATE TABLE IF NOT EXISTS customer_deduction_codes (
    customer_id text NOT NULL,
    customer_reason_code text NOT NULL,
    reason_code text NOT NULL,
    PRIMARY KEY (customer_id, customer_reason_code)
);

-- How to read a retailer portal's deduction report (CSV): which column holds what.
CREATE TABLE IF NOT EXISTS deduction_report_profiles (
    profile_id text PRIMARY KEY,
    customer_id text NOT NULL,
    columns jsonb NOT NULL,
    delimiter text NOT NULL DEFAULT ',',
    date_format text NOT NULL DEFAULT '%Y-%m-%d',
    updated_at timestamptz NOT NULL DEFAULT now()
);
