-- The dispute workflow (issue 11): where the work stands, when it falls due (by reason code) and
-- was escalated, notes, and attachments kept with the dispute (bytea, size-limited by the API).
ALTER TABLE disputes
    ADD COLUMN IF NOT EXISTS work_status text NOT NULL DEFAULT 'new',
    ADD COLUMN IF NOT EXISTS due_on date,
    ADD COLUMN IF NOT EXISTS escalated_on date;
UPDATE disputes SET work_status = 'resolved' WHERE status = 'resolved' AND work_status = 'new';
UPDATE disputes SET due_on = opened_on + CASE reason_code
    WHEN 'PRICING' THEN 10 WHEN 'QUANTITY' THEN 14 WHEN 'DAMAGED' THEN 14 WHEN 'NOT_RECEIVED' THEN 14
    WHEN 'DUPLICATE_BILLING' THEN 7 WHEN 'PROMOTION' THEN 30 WHEN 'TAX' THEN 10 WHEN 'UNSPECIFIED' THEN 7
    ELSE 21 END
 WHERE due_on IS NULL;
CREATE INDEX IF NOT EXISTS disputes_open_due ON disputes (due_on) WHERE status = 'open';

CREATE TABLE IF NOT EXISTS dispute_notes (
    note_id text PRIMARY KEY,
    dispute_id text NOT NULL,
    text text NOT NULL,
    author text NOT NULL,
    added_on date NOT NULL,
    created_seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX IF NOT EXISTS dispute_notes_dispute ON dispute_notes (dispute_id, created_seq);

CREATE TABLE IF NOT EXISTS dispute_attachments (
    attachment_id text PRIMARY KEY,
    dispute_id text NOT NULL,
    file_name text NOT NULL,
    content_type text NOT NULL,
    kind text NOT NULL,
    size_bytes integer NOT NULL,
    sha256 text NOT NULL,
    content bytea NOT NULL,
    added_by text NOT NULL,
    added_on date NOT NULL,
    created_seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX IF NOT EXISTS dispute_attachments_dispute ON dispute_attachments (dispute_id, created_seq);
