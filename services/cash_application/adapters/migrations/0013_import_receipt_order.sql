-- A large file's receipts are posted grouped by payer (the customers whose open items they read),
-- in file order within a group, and cut into chunks in that order (application/chunked_imports.py).
-- The order is computed once, when the import starts, and kept with the import record, so an
-- import resumed after a crash cuts the same chunks even if the customer master or the learned
-- aliases changed in between. NULL: file order (imports begun before this migration).
ALTER TABLE bank_imports ADD COLUMN IF NOT EXISTS receipt_order integer[];
