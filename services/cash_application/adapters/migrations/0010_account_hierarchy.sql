-- Account hierarchies from invoicing's CustomerParentChanged: a parent account's receipts are
-- matched against its children's open invoices too. One row per customer that has a parent.
CREATE TABLE IF NOT EXISTS customer_parents (
    customer_id text PRIMARY KEY,
    parent_customer_id text NOT NULL
);
CREATE INDEX IF NOT EXISTS customer_parents_parent ON customer_parents (parent_customer_id);
