-- Why the matcher applied an imported receipt as it did (rule, reference, customer evidence),
-- shown with the payment beside each application's rule and confidence.
ALTER TABLE payment_sources ADD COLUMN IF NOT EXISTS explanation text;
