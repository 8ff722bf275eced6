-- Everything other contexts settle an invoice with, as a ledger of signed entries keyed by the
-- producer's own id (so redelivery cannot count twice and the order of arrival does not matter):
--   payment      PaymentApplied       (+amount, entry_id = application_id)
--   payment      PaymentUnapplied     (-amount, entry_id = application_id || ':reversed')
--   adjustment   SmallBalanceWrittenOff (+amount, entry_id = adjustment_id)
--   adjustment   SmallBalanceWriteOffReversed (-amount, entry_id = adjustment_id || ':reversed')
--   write_off    WriteOffApproved     (+amount, entry_id = write_off_id)
CREATE TABLE IF NOT EXISTS invoice_settlements (
    entry_id text PRIMARY KEY,
    invoice_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('payment', 'adjustment', 'write_off')),
    payment_id text,
    amount numeric(20, 4) NOT NULL,
    value_date date NOT NULL
);
CREATE INDEX IF NOT EXISTS invoice_settlements_invoice ON invoice_settlements (invoice_id, kind);

-- PaymentApplied v1 rows carried no application id; v2's upcaster names them payment:invoice.
INSERT INTO invoice_settlements (entry_id, invoice_id, kind, payment_id, amount, value_date)
SELECT payment_id || ':' || invoice_id, invoice_id, 'payment', payment_id, amount, value_date
  FROM invoice_payments
ON CONFLICT (entry_id) DO NOTHING;
DROP TABLE IF EXISTS invoice_payments;

-- Credit holds placed and released by collections (an ERP stops new orders on them).
ALTER TABLE customers ADD COLUMN IF NOT EXISTS credit_hold jsonb;
ALTER TABLE customers ADD COLUMN IF NOT EXISTS credit_hold_version date;
