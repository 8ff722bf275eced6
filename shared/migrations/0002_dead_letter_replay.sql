-- A parked event can be replayed once its cause is fixed; the row stays as the audit trail.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS replayed_at timestamptz;
