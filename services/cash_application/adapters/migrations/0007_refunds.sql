-- Refunds of unapplied cash (PaymentRefunded): one row each, and the payment's refunded sum,
-- which the derived unapplied_amount now subtracts (amount - applied - refunded).
CREATE TABLE IF NOT EXISTS payment_refunds (
    refund_id text PRIMARY KEY,
    payment_id text NOT NULL,
    customer_id text NOT NULL,
    currency char(3) NOT NULL,
    amount numeric(20, 4) NOT NULL CHECK (amount > 0),
    method text NOT NULL,
    reference text,
    refunded_on date NOT NULL,
    reason text
);
CREATE INDEX IF NOT EXISTS payment_refunds_payment ON payment_refunds (payment_id);

ALTER TABLE payments ADD COLUMN IF NOT EXISTS refunded_amount numeric(20, 4) NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS payments_unapplied;
ALTER TABLE payments DROP COLUMN IF EXISTS unapplied_amount;
ALTER TABLE payments ADD COLUMN unapplied_amount numeric(20, 4)
    GENERATED ALWAYS AS (amount - applied_amount - refunded_amount) STORED;
CREATE INDEX IF NOT EXISTS payments_unapplied ON payments (customer_id, received_seq) WHERE unapplied_amount > 0;
