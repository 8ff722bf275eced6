-- Invoicing's adjustments and voids (InvoiceAdjusted, InvoiceVoided): keyed facts, one row each,
-- summed into open_items.adjusted_amount (signed: a credit adjustment or a void lowers the open
-- balance, a debit adjustment raises it). open balance = total - credited - applied
-- - written_off - adjusted.
ALTER TABLE open_items ADD COLUMN IF NOT EXISTS adjusted_amount numeric(20, 4) NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS open_item_adjustments (
    adjustment_id text PRIMARY KEY,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    currency char(3) NOT NULL,
    kind text NOT NULL CHECK (kind IN ('debit', 'credit', 'void')),
    amount numeric(20, 4) NOT NULL,
    adjusted_on date NOT NULL,
    reason text NOT NULL
);
CREATE INDEX IF NOT EXISTS open_item_adjustments_invoice ON open_item_adjustments (invoice_id);
