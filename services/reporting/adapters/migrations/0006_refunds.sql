-- PaymentRefunded: unapplied cash paid back to the customer. Cash received net of returns and
-- refunds is what unapplied cash is computed from; no invoice balance moves.
CREATE TABLE IF NOT EXISTS refunds (
    event_id text PRIMARY KEY,
    refund_id text NOT NULL UNIQUE,
    payment_id text NOT NULL,
    customer_id text NOT NULL,
    currency text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    method text NOT NULL,
    reference text,
    refunded_on date NOT NULL
);
CREATE INDEX IF NOT EXISTS refunds_currency ON refunds (currency, refunded_on);
