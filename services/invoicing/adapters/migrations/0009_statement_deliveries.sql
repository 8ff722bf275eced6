-- Statements of account delivered by the customer's preference through the document outbox
-- (issue 11, point 5): a delivery row of kind 'statement' names the customer (or parent) and the
-- date it is as of; its PDF is reporting's statement as of that date. Monthly statement runs per
-- customer or parent are scheduled in statement_schedules and queued by the invoicing worker.
ALTER TABLE document_deliveries DROP CONSTRAINT IF EXISTS document_deliveries_document_kind_check;
ALTER TABLE document_deliveries ADD CONSTRAINT document_deliveries_document_kind_check
    CHECK (document_kind IN ('invoice', 'credit_memo', 'statement'));
ALTER TABLE document_deliveries
    ADD COLUMN IF NOT EXISTS as_of date,
    ADD COLUMN IF NOT EXISTS currency text;

CREATE TABLE IF NOT EXISTS statement_schedules (
    schedule_id text PRIMARY KEY,
    customer_id text NOT NULL,
    frequency text NOT NULL CHECK (frequency IN ('monthly')),
    next_as_of date NOT NULL,
    active boolean NOT NULL DEFAULT true,
    created_by text,
    created_on date NOT NULL,
    last_as_of date,
    created_seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE UNIQUE INDEX IF NOT EXISTS statement_schedules_one_active ON statement_schedules (customer_id) WHERE active;
CREATE INDEX IF NOT EXISTS statement_schedules_due ON statement_schedules (next_as_of) WHERE active;
