-- Credit limits over time, from invoicing's CustomerRegistered and CustomerProfileChanged: risk
-- scoring as of a date uses the limit that held on that date.
CREATE TABLE IF NOT EXISTS credit_limit_history (
    event_id text PRIMARY KEY,
    customer_id text NOT NULL,
    effective_on date NOT NULL,
    credit_limit numeric(20, 4) NOT NULL,
    recorded_seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX IF NOT EXISTS credit_limit_history_customer ON credit_limit_history (customer_id, effective_on);
