-- A key's stored answer as the text that was sent (issue 10): the answer is JSON the service has
-- already encoded, and converting it to jsonb on the way in cost more than anything else about
-- storing it (a 100,000-receipt bank import's 39 MB result: 1.7 s as jsonb, 0.3 s as lz4 text).
-- A new column, not a changed type: adding a nullable column rewrites nothing, so a large
-- idempotency_keys table is not locked while it is copied. Answers stored before stay in
-- response_body and replay from there.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS response_text text;

-- lz4 where the server has it (PostgreSQL 14 or later built with lz4, as Debian's is): about
-- twice as fast as the default pglz for large answers. Without it the default compression stays.
DO $$
BEGIN
    ALTER TABLE idempotency_keys ALTER COLUMN response_text SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'idempotency_keys.response_text keeps the default compression: %', SQLERRM;
END
$$;
