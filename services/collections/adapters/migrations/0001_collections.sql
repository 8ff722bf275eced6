-- Receivables facts fed by invoicing and cash_application events. Each fact is keyed by what
-- it is (an invoice, a credit memo, the event that applied a payment), so the order in which
-- the topics deliver does not matter and a replay converges to the same rows.
CREATE TABLE IF NOT EXISTS invoices (
    invoice_id text PRIMARY KEY,
    customer_id text NOT NULL,
    currency char(3) NOT NULL,
    total_amount numeric(20, 4) NOT NULL,
    issue_date date NOT NULL,
    due_date date NOT NULL
);
CREATE INDEX IF NOT EXISTS invoices_customer ON invoices (customer_id);

CREATE TABLE IF NOT EXISTS payments_applied (
    event_id text PRIMARY KEY,
    payment_id text NOT NULL,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    currency char(3) NOT NULL,
    amount numeric(20, 4) NOT NULL,
    value_date date NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_applied_invoice ON payments_applied (invoice_id, value_date);

CREATE TABLE IF NOT EXISTS credit_memos (
    credit_memo_id text PRIMARY KEY,
    invoice_id text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    issue_date date NOT NULL
);
CREATE INDEX IF NOT EXISTS credit_memos_invoice ON credit_memos (invoice_id);

-- Promises to pay, written in the same transaction as their events.
CREATE TABLE IF NOT EXISTS promises (
    promise_id text PRIMARY KEY,
    customer_id text NOT NULL,
    currency char(3) NOT NULL,
    amount numeric(20, 4) NOT NULL,
    promise_date date NOT NULL,
    made_on date NOT NULL,
    grace_days integer NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'kept', 'broken')),
    paid_amount numeric(20, 4),
    shortfall numeric(20, 4),
    kept_on date,
    broken_on date,
    version integer NOT NULL,
    created_seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX IF NOT EXISTS promises_customer ON promises (customer_id, created_seq);
CREATE INDEX IF NOT EXISTS promises_open ON promises (made_on) WHERE status = 'open';

CREATE TABLE IF NOT EXISTS promise_invoices (
    promise_id text NOT NULL REFERENCES promises (promise_id),
    invoice_id text NOT NULL,
    position integer NOT NULL,
    PRIMARY KEY (promise_id, invoice_id)
);
CREATE INDEX IF NOT EXISTS promise_invoices_invoice ON promise_invoices (invoice_id);
