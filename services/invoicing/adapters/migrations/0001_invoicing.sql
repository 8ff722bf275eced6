-- Read models kept in the same transaction as the events (write side lookups and queries).
CREATE TABLE IF NOT EXISTS customers (
    customer_id text PRIMARY KEY,
    name text NOT NULL,
    currency char(3) NOT NULL,
    payment_terms_days integer NOT NULL,
    credit_limit numeric(20, 4) NOT NULL,
    registered_on date NOT NULL,
    version integer NOT NULL
);

CREATE TABLE IF NOT EXISTS invoices (
    invoice_id text PRIMARY KEY,
    invoice_number text NOT NULL UNIQUE,
    customer_id text NOT NULL REFERENCES customers (customer_id),
    currency char(3) NOT NULL,
    issue_date date NOT NULL,
    due_date date NOT NULL,
    total_amount numeric(20, 4) NOT NULL,
    credited_amount numeric(20, 4) NOT NULL DEFAULT 0,
    lines jsonb NOT NULL,
    version integer NOT NULL,
    created_seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX IF NOT EXISTS invoices_customer ON invoices (customer_id, created_seq);

CREATE TABLE IF NOT EXISTS credit_memos (
    credit_memo_id text PRIMARY KEY,
    invoice_id text NOT NULL REFERENCES invoices (invoice_id),
    customer_id text NOT NULL,
    currency char(3) NOT NULL,
    amount numeric(20, 4) NOT NULL,
    issue_date date NOT NULL,
    reason text NOT NULL,
    dispute_id text UNIQUE
);
CREATE INDEX IF NOT EXISTS credit_memos_invoice ON credit_memos (invoice_id);

-- Fed by cash_application events: payments applied to our invoices (keyed facts, so the
-- order in which they arrive relative to InvoiceIssued does not matter).
CREATE TABLE IF NOT EXISTS invoice_payments (
    payment_id text NOT NULL,
    invoice_id text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    value_date date NOT NULL,
    PRIMARY KEY (payment_id, invoice_id)
);
CREATE INDEX IF NOT EXISTS invoice_payments_invoice ON invoice_payments (invoice_id);
