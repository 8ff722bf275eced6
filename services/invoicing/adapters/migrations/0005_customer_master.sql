-- The customer master over time (CustomerProfileChanged): the latest-effective values beside the
-- registration's, and every change for the history; as-of reads replay the customer's stream.
ALTER TABLE customers
    ADD COLUMN IF NOT EXISTS language text NOT NULL DEFAULT 'en',
    ADD COLUMN IF NOT EXISTS delivery_preference text NOT NULL DEFAULT 'email_pdf',
    ADD COLUMN IF NOT EXISTS billing_contacts jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN IF NOT EXISTS billing_address jsonb;

CREATE TABLE IF NOT EXISTS customer_profile_changes (
    customer_id text NOT NULL,
    version integer NOT NULL,
    effective_on date NOT NULL,
    changes jsonb NOT NULL,
    changed_by text NOT NULL,
    PRIMARY KEY (customer_id, version)
);
