-- Card processors' payouts (Stripe, Adyen): one row per payout, with its composition and, once
-- the bank statement line that carried it is known, that line. Charges are payments (method
-- card); fees are ProcessorFeeRecorded events on the payout's stream ("card-payout").
CREATE TABLE IF NOT EXISTS card_payouts (
    payout_id text PRIMARY KEY,  -- <processor>:<the processor's payout id or merchant:batch>
    processor text NOT NULL,
    processor_payout_id text NOT NULL,
    import_id text NOT NULL REFERENCES bank_imports (import_id),
    currency char(3) NOT NULL,
    amount numeric(20, 4) NOT NULL,  -- the bank credit it must be: charges - fees - refunds - chargebacks ...
    arrival_date date NOT NULL,
    charges numeric(20, 4) NOT NULL,
    fees numeric(20, 4) NOT NULL,
    refunds numeric(20, 4) NOT NULL,
    chargebacks numeric(20, 4) NOT NULL,
    other numeric(20, 4) NOT NULL,
    bank_import_id text,  -- the statement line that carried it
    bank_position text,
    bank_value_date date,
    superseded_payment_id text  -- a receipt the bank line had posted before the report came (returned)
);
CREATE INDEX IF NOT EXISTS card_payouts_unreconciled ON card_payouts (currency, amount) WHERE bank_import_id IS NULL;

-- A statement line recognised as a card payout (kind 'card_payout') names it.
ALTER TABLE statement_lines ADD COLUMN IF NOT EXISTS payout_id text;
CREATE INDEX IF NOT EXISTS statement_lines_credit_amount ON statement_lines (currency, amount)
    WHERE direction = 'credit' AND kind = 'receipt';
