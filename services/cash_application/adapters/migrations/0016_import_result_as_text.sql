-- An import's result is kept as the JSON text its POST answered (json, which PostgreSQL only
-- checks, not jsonb, which it converts): a 100,000-receipt import's result is some 40 MB, and
-- converting it to jsonb took about 2 s of the import's last transaction, with nothing else to do
-- meanwhile; each chunk's payment summaries likewise. Nothing queries inside either: the list of
-- imports reads the new `summary` (the result without its payments), so listing no longer reads
-- every payment of every import shown.
ALTER TABLE bank_imports ADD COLUMN IF NOT EXISTS summary jsonb;
UPDATE bank_imports SET summary = result - 'payments' WHERE result IS NOT NULL AND summary IS NULL;
ALTER TABLE bank_imports ALTER COLUMN result TYPE json USING result::json;
ALTER TABLE bank_import_chunks ALTER COLUMN payments TYPE json USING payments::json;
