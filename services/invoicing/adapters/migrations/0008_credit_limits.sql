-- Credit limits enforced at issue time. A customer may be registered without a limit (NULL:
-- unlimited); an invoice issued above a limit on an explicit approval keeps that override.
ALTER TABLE customers ALTER COLUMN credit_limit DROP NOT NULL;
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS credit_override jsonb;
