-- Account hierarchies from invoicing's CustomerParentChanged: a customer's parent account (the
-- account that pays for it) from a date; parent_customer_id null: the customer stands alone
-- again. The latest change effective on or before a date applies; on one date, the later version
-- of the customer's stream. The worklist ranks a paying parent's family as one unit and the
-- account shows the family's balances.
CREATE TABLE IF NOT EXISTS customer_parents (
    event_id text PRIMARY KEY,
    customer_id text NOT NULL,
    parent_customer_id text,
    effective_on date NOT NULL,
    stream_version integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS customer_parents_customer ON customer_parents (customer_id, effective_on);
CREATE INDEX IF NOT EXISTS customer_parents_parent ON customer_parents (parent_customer_id);
