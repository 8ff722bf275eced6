-- Large bank files import in chunks, each committed with its progress, so a 100,000-receipt file
-- neither holds every row lock for its whole duration nor starts over after a crash: the same
-- file sent again resumes after the last committed chunk.
ALTER TABLE bank_imports ADD COLUMN IF NOT EXISTS receipts_total integer;
ALTER TABLE bank_imports ADD COLUMN IF NOT EXISTS receipts_done integer NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS bank_import_chunks (
    import_id text NOT NULL REFERENCES bank_imports (import_id),
    chunk integer NOT NULL,
    first_receipt integer NOT NULL,
    last_receipt integer NOT NULL,
    counts jsonb NOT NULL,
    payments jsonb NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (import_id, chunk)
);
