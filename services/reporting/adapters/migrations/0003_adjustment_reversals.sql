-- SmallBalanceWriteOffReversed: a small-balance write-off undone (same adjustment_id); the
-- invoice's balance grows by amount again from reversed_on. One more movement in the view
-- (a negative adjustment) and in the snapshot.
CREATE TABLE IF NOT EXISTS adjustment_reversals (
    event_id text PRIMARY KEY,
    adjustment_id text NOT NULL,
    payment_id text NOT NULL,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    currency text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    reversed_on date NOT NULL,
    reason text NOT NULL
);
CREATE INDEX IF NOT EXISTS adjustment_reversals_invoice ON adjustment_reversals (invoice_id, reversed_on);

CREATE OR REPLACE VIEW invoice_movements AS
    SELECT invoice_id, 'credit' AS kind, amount, issue_date AS on_date FROM credits
    UNION ALL SELECT invoice_id, 'cash', amount, value_date FROM applications
    UNION ALL SELECT invoice_id, 'cash', -amount, unapplied_on FROM unapplications
    UNION ALL SELECT invoice_id, 'adjustment', amount, value_date FROM adjustments
    UNION ALL SELECT invoice_id, 'adjustment', -amount, reversed_on FROM adjustment_reversals
    UNION ALL SELECT invoice_id, 'write_off', amount, approved_on FROM write_offs;
