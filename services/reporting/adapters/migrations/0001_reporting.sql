-- Reporting's read model: facts projected from every context's events, keyed by what they
-- refer to, so they converge whatever order the topics deliver them in (a PaymentApplied may
-- arrive before its InvoiceIssued). Balances are never stored: reports compute them from the
-- facts as of a date. Each row keeps the event_id it came from; a redelivered event hits a
-- unique key and changes nothing.
--
-- Every table here is dropped and rebuilt by `python -m services.reporting rebuild`
-- (see docs/metrics.md); list a new fact table in adapters/repository.FACT_TABLES.

CREATE TABLE IF NOT EXISTS customers (
    customer_id text PRIMARY KEY,
    name text NOT NULL,
    currency text NOT NULL,
    payment_terms_days integer NOT NULL,
    registered_on date NOT NULL,
    event_id text NOT NULL UNIQUE
);

-- InvoiceIssued
CREATE TABLE IF NOT EXISTS invoices (
    invoice_id text PRIMARY KEY,
    invoice_number text NOT NULL,
    customer_id text NOT NULL,
    currency text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    issue_date date NOT NULL,
    due_date date NOT NULL,
    event_id text NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS invoices_currency_issue ON invoices (currency, issue_date);
CREATE INDEX IF NOT EXISTS invoices_customer ON invoices (customer_id);

-- CreditMemoIssued
CREATE TABLE IF NOT EXISTS credits (
    credit_memo_id text PRIMARY KEY,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    currency text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    issue_date date NOT NULL,
    dispute_id text,
    event_id text NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS credits_invoice ON credits (invoice_id, issue_date);

-- PaymentApplied. One payment may be applied to one invoice in several steps, so the event
-- is the key, not (payment_id, invoice_id).
CREATE TABLE IF NOT EXISTS applications (
    event_id text PRIMARY KEY,
    payment_id text NOT NULL,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    currency text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    value_date date NOT NULL
);
CREATE INDEX IF NOT EXISTS applications_invoice ON applications (invoice_id, value_date);
CREATE INDEX IF NOT EXISTS applications_payment ON applications (payment_id);

-- PaymentReceived (unapplied cash = received - applied, as of a date)
CREATE TABLE IF NOT EXISTS payments (
    payment_id text PRIMARY KEY,
    customer_id text NOT NULL,
    currency text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    value_date date NOT NULL,
    method text NOT NULL,
    reference text,
    event_id text NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS payments_currency_value ON payments (currency, value_date);

-- PromiseToPayMade
CREATE TABLE IF NOT EXISTS promises (
    promise_id text PRIMARY KEY,
    customer_id text NOT NULL,
    currency text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    promise_date date NOT NULL,
    made_on date NOT NULL,
    grace_days integer NOT NULL,
    invoice_ids text[] NOT NULL,
    event_id text NOT NULL UNIQUE
);

-- PromiseKept / PromiseBroken: one row per outcome event, so the facts need no ordering
-- between them (a promise broken and later kept has both).
CREATE TABLE IF NOT EXISTS promise_outcomes (
    event_id text PRIMARY KEY,
    promise_id text NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('kept', 'broken')),
    customer_id text NOT NULL,
    currency text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    paid_amount numeric(20, 4) NOT NULL,
    shortfall numeric(20, 4) NOT NULL,
    promise_date date NOT NULL,
    outcome_on date NOT NULL
);
CREATE INDEX IF NOT EXISTS promise_outcomes_promise ON promise_outcomes (promise_id);

-- DisputeOpened / DeductionOpened
CREATE TABLE IF NOT EXISTS disputes (
    dispute_id text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('dispute', 'deduction')),
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    payment_id text,
    currency text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    reason_code text NOT NULL,
    opened_on date NOT NULL,
    event_id text NOT NULL UNIQUE
);

-- DisputeResolved (the credit it grants reaches AR as invoicing's CreditMemoIssued)
CREATE TABLE IF NOT EXISTS dispute_resolutions (
    dispute_id text PRIMARY KEY,
    currency text NOT NULL,
    credit_amount numeric(20, 4) NOT NULL,
    resolution text NOT NULL,
    resolved_on date NOT NULL,
    event_id text NOT NULL UNIQUE
);
