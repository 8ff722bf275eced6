-- Invoicing's adjustments and voids (InvoiceAdjusted, InvoiceVoided). amount is signed the way
-- every movement is: positive lowers the invoice's balance (a credit adjustment, a void),
-- negative raises it (a debit adjustment). They are movements of kind 'adjustment', so the
-- roll-forward shows them on its adjustments line.
CREATE TABLE IF NOT EXISTS invoice_adjustments (
    event_id text PRIMARY KEY,
    adjustment_id text NOT NULL UNIQUE,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    currency text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('debit', 'credit', 'void')),
    amount numeric(20, 4) NOT NULL,
    adjusted_on date NOT NULL,
    reason_code text NOT NULL
);
CREATE INDEX IF NOT EXISTS invoice_adjustments_invoice ON invoice_adjustments (invoice_id, adjusted_on);

CREATE OR REPLACE VIEW invoice_movements AS
    SELECT invoice_id, 'credit' AS kind, amount, issue_date AS on_date FROM credits
    UNION ALL SELECT invoice_id, 'cash', amount, value_date FROM applications
    UNION ALL SELECT invoice_id, 'cash', -amount, unapplied_on FROM unapplications
    UNION ALL SELECT invoice_id, 'adjustment', amount, value_date FROM adjustments
    UNION ALL SELECT invoice_id, 'adjustment', -amount, reversed_on FROM adjustment_reversals
    UNION ALL SELECT invoice_id, 'write_off', amount, approved_on FROM write_offs
    UNION ALL SELECT invoice_id, 'adjustment', amount, adjusted_on FROM invoice_adjustments;
