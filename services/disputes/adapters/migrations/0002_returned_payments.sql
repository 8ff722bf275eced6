-- Payments the bank returned, fed by cash_application's PaymentReturned. A short pay of a
-- returned payment opens no deduction whichever of the two events is handled first (dead-letter
-- replay or reordering can put the ShortPayDetected after the PaymentReturned).
CREATE TABLE IF NOT EXISTS returned_payments (
    payment_id text PRIMARY KEY,
    reason_code text NOT NULL,
    returned_on date NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
