-- Terms codes (NET30, NET30_EOM, DUE_ON_RECEIPT) beside the day count.
ALTER TABLE customers ADD COLUMN IF NOT EXISTS payment_terms text;
UPDATE customers SET payment_terms = CASE WHEN payment_terms_days = 0 THEN 'DUE_ON_RECEIPT'
                                          ELSE 'NET' || payment_terms_days END
 WHERE payment_terms IS NULL;
