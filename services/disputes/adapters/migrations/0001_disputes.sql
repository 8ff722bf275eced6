-- Invoice reference model, fed by invoicing's InvoiceIssued: what an API-opened dispute is
-- checked against (the invoice exists, its customer, currency and amount).
CREATE TABLE IF NOT EXISTS invoice_references (
    invoice_id text PRIMARY KEY,
    customer_id text NOT NULL,
    currency char(3) NOT NULL,
    total_amount numeric(20, 4) NOT NULL,
    issue_date date NOT NULL,
    due_date date NOT NULL
);

-- Disputes and deductions, written in the same transaction as their events.
CREATE TABLE IF NOT EXISTS disputes (
    dispute_id text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('dispute', 'deduction')),
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    payment_id text,
    currency char(3) NOT NULL,
    amount numeric(20, 4) NOT NULL,
    reason_code text NOT NULL,
    description text,
    opened_on date NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'resolved')),
    resolution text,
    credit_amount numeric(20, 4),
    resolved_on date,
    resolution_note text,
    version integer NOT NULL,
    created_seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX IF NOT EXISTS disputes_customer ON disputes (customer_id, created_seq);
CREATE INDEX IF NOT EXISTS disputes_invoice ON disputes (invoice_id);
CREATE INDEX IF NOT EXISTS disputes_status ON disputes (status, created_seq);
