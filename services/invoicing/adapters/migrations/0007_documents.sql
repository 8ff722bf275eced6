-- Documents (issue 11, point 5): tax amounts as the ERP gave them and the customer's PO number on
-- each invoice; the customer-specific rule that every invoice carries a PO number.
ALTER TABLE invoices
    ADD COLUMN IF NOT EXISTS taxes jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN IF NOT EXISTS po_number text;
ALTER TABLE customers ADD COLUMN IF NOT EXISTS po_number_required boolean NOT NULL DEFAULT false;

-- The delivery outbox: a row per invoice or credit memo issued, written in the transaction that
-- issues it, by the customer's delivery preference on the issue date. Email rows are sent after
-- commit (with the PDF rendered from the document, Message-ID = delivery_id, so a resend after a
-- crash is recognisably the same message); postal, portal upload and e-invoice rows wait to be
-- picked up by the print shop, the portal connector or the e-invoicing network.
CREATE TABLE IF NOT EXISTS document_deliveries (
    delivery_id text PRIMARY KEY,
    document_kind text NOT NULL CHECK (document_kind IN ('invoice', 'credit_memo')),
    document_id text NOT NULL,
    customer_id text NOT NULL,
    channel text NOT NULL CHECK (channel IN ('email_pdf', 'postal', 'portal_upload', 'e_invoice')),
    language text NOT NULL,
    recipient text,
    status text NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'ready', 'picked_up')),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    created_on date NOT NULL,
    delivered_at timestamptz,
    picked_up_by text,
    created_seq bigint GENERATED ALWAYS AS IDENTITY,
    UNIQUE (document_kind, document_id)
);
CREATE INDEX IF NOT EXISTS document_deliveries_status ON document_deliveries (status, created_seq);
CREATE INDEX IF NOT EXISTS document_deliveries_customer ON document_deliveries (customer_id, created_seq);
