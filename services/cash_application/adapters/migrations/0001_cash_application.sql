-- cash_application read models.
--
-- open_items: invoices to apply cash against, fed by invoicing events (InvoiceIssued,
-- CreditMemoIssued) and by this context's own PaymentApplied events (applied_amount, updated in
-- the transaction that decides the application, under the row's lock). A credit memo may
-- arrive before its invoice: the row then exists with total_amount NULL (not yet issued) and
-- only its credits; InvoiceIssued fills in the rest. open balance = total - credited - applied.
CREATE TABLE IF NOT EXISTS open_items (
    invoice_id text PRIMARY KEY,
    invoice_number text,
    customer_id text NOT NULL,
    currency char(3) NOT NULL,
    total_amount numeric(20, 4),
    credited_amount numeric(20, 4) NOT NULL DEFAULT 0,
    applied_amount numeric(20, 4) NOT NULL DEFAULT 0 CHECK (applied_amount >= 0),
    issue_date date,
    due_date date,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    issued_seen_at timestamptz
);
CREATE INDEX IF NOT EXISTS open_items_customer_due ON open_items (customer_id, due_date, invoice_id)
    WHERE total_amount IS NOT NULL;
-- Remittance often names the invoice number; numbers are looked up within the customer.
CREATE INDEX IF NOT EXISTS open_items_customer_number ON open_items (customer_id, invoice_number);

-- Keyed facts: one row per credit memo, so a redelivery (or any order) adds a credit once.
CREATE TABLE IF NOT EXISTS open_item_credits (
    credit_memo_id text PRIMARY KEY,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    currency char(3) NOT NULL,
    amount numeric(20, 4) NOT NULL,
    issue_date date NOT NULL,
    reason text NOT NULL
);
CREATE INDEX IF NOT EXISTS open_item_credits_invoice ON open_item_credits (invoice_id);

-- Payments as received, with what was applied; built from the payment streams (rebuildable).
-- unapplied_amount is derived so it can never disagree with amount and applied_amount.
CREATE TABLE IF NOT EXISTS payments (
    payment_id text PRIMARY KEY,
    customer_id text NOT NULL,
    currency char(3) NOT NULL,
    amount numeric(20, 4) NOT NULL CHECK (amount > 0),
    value_date date NOT NULL,
    method text NOT NULL,
    reference text,
    applied_amount numeric(20, 4) NOT NULL DEFAULT 0,
    unapplied_amount numeric(20, 4) GENERATED ALWAYS AS (amount - applied_amount) STORED,
    unapplied_reason text,
    version integer NOT NULL,
    received_seq bigint GENERATED ALWAYS AS IDENTITY,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CHECK (applied_amount >= 0 AND applied_amount <= amount)
);
CREATE INDEX IF NOT EXISTS payments_customer ON payments (customer_id, received_seq);
CREATE INDEX IF NOT EXISTS payments_unapplied ON payments (customer_id, received_seq) WHERE unapplied_amount > 0;

-- One row per PaymentApplied event (keyed by event id: projecting an event twice is a no-op).
-- rule and confidence say how the application was decided (remittance now, auto-matching later).
CREATE TABLE IF NOT EXISTS payment_applications (
    event_id uuid PRIMARY KEY,
    payment_id text NOT NULL,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    currency char(3) NOT NULL,
    amount numeric(20, 4) NOT NULL CHECK (amount > 0),
    value_date date NOT NULL,
    rule text NOT NULL,
    confidence numeric(3, 2) NOT NULL,
    stream_version integer NOT NULL
);
CREATE INDEX IF NOT EXISTS payment_applications_payment ON payment_applications (payment_id, stream_version);
CREATE INDEX IF NOT EXISTS payment_applications_invoice ON payment_applications (invoice_id);

CREATE TABLE IF NOT EXISTS short_pays (
    event_id uuid PRIMARY KEY,
    payment_id text NOT NULL,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    currency char(3) NOT NULL,
    open_amount numeric(20, 4) NOT NULL,
    paid_amount numeric(20, 4) NOT NULL,
    shortfall numeric(20, 4) NOT NULL,
    reason_code text,
    value_date date NOT NULL,
    stream_version integer NOT NULL
);
CREATE INDEX IF NOT EXISTS short_pays_payment ON short_pays (payment_id, stream_version);
CREATE INDEX IF NOT EXISTS short_pays_invoice ON short_pays (invoice_id);
