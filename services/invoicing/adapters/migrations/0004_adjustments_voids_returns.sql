-- Adjustments (debit/credit, with approval above a limit), voids and returns (issue 11).
-- Posted adjustments and the voided amount move the invoice's open balance:
--   open = total + debit_adjusted - credited - credit_adjusted - voided_amount - settlements
ALTER TABLE invoices
    ADD COLUMN IF NOT EXISTS debit_adjusted numeric(20, 4) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS credit_adjusted numeric(20, 4) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS voided_amount numeric(20, 4) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS voided_on date,
    ADD COLUMN IF NOT EXISTS void_reason text;

-- Every adjustment asked for, its status and who decided.
CREATE TABLE IF NOT EXISTS invoice_adjustments (
    adjustment_id text PRIMARY KEY,
    invoice_id text NOT NULL REFERENCES invoices (invoice_id),
    customer_id text NOT NULL,
    currency char(3) NOT NULL,
    direction text NOT NULL CHECK (direction IN ('debit', 'credit')),
    amount numeric(20, 4) NOT NULL,
    reason_code text NOT NULL,
    adjustment_date date NOT NULL,
    status text NOT NULL CHECK (status IN ('pending_approval', 'posted', 'rejected')),
    requested_by text NOT NULL,
    approved_by text,
    rejected_by text,
    decided_on date,
    rejection_reason text,
    note text,
    created_seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX IF NOT EXISTS invoice_adjustments_invoice ON invoice_adjustments (invoice_id, created_seq);
CREATE INDEX IF NOT EXISTS invoice_adjustments_pending ON invoice_adjustments (status, created_seq);

-- A credit memo for returned goods: its RMA and the invoice lines it credits.
ALTER TABLE credit_memos
    ADD COLUMN IF NOT EXISTS rma_number text,
    ADD COLUMN IF NOT EXISTS lines jsonb NOT NULL DEFAULT '[]'::jsonb;
CREATE UNIQUE INDEX IF NOT EXISTS credit_memos_rma ON credit_memos (invoice_id, rma_number) WHERE rma_number IS NOT NULL;
