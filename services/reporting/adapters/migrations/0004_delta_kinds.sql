-- The snapshot keeps its movements per kind as well (credited, applied net of unapplications,
-- adjusted net of reversals, written_off; moved is their sum), so the full aging's book-wide
-- tie-out reads a few thousand rows instead of every invoice and movement.
ALTER TABLE ar_deltas
    ADD COLUMN IF NOT EXISTS credited numeric(24, 4) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS applied numeric(24, 4) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS adjusted numeric(24, 4) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS written_off numeric(24, 4) NOT NULL DEFAULT 0;

-- Rows recorded before this migration: their per-kind sums (the same rows the rebuild
-- computes; running it twice sets the same values).
UPDATE ar_deltas d
SET credited = k.credited, applied = k.applied, adjusted = k.adjusted, written_off = k.written_off
FROM (
    SELECT i.currency, greatest(m.on_date, i.issue_date) AS eff_date, i.due_date, i.issue_date,
           coalesce(sum(m.amount) FILTER (WHERE m.kind = 'credit'), 0) AS credited,
           coalesce(sum(m.amount) FILTER (WHERE m.kind = 'cash'), 0) AS applied,
           coalesce(sum(m.amount) FILTER (WHERE m.kind = 'adjustment'), 0) AS adjusted,
           coalesce(sum(m.amount) FILTER (WHERE m.kind = 'write_off'), 0) AS written_off
    FROM invoice_movements m JOIN invoices i USING (invoice_id)
    GROUP BY 1, 2, 3, 4
) k
WHERE (d.currency, d.eff_date, d.due_date, d.issue_date) = (k.currency, k.eff_date, k.due_date, k.issue_date);
