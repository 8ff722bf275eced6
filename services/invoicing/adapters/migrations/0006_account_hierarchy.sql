-- Account hierarchies (CustomerParentChanged): the account that pays for a customer. Kept on
-- the customer row for the write side's checks (cycles, depth) and the family's exposure.
ALTER TABLE customers ADD COLUMN IF NOT EXISTS parent_customer_id text;
CREATE INDEX IF NOT EXISTS customers_parent ON customers (parent_customer_id) WHERE parent_customer_id IS NOT NULL;
