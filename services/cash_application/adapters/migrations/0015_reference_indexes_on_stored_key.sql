-- The key and variant indexes of migration 0011 on the stored key (migration 0014) instead of the
-- expression: PostgreSQL computed cash_open_item_key three times for every open item written (the
-- stored column and each index), about 70 us of database time each; once now. The queries use
-- the column (adapters/repository.py: _ITEM_KEY). The variants index keeps its pending list off
-- (migration 0012).
CREATE INDEX IF NOT EXISTS open_items_stored_reference_key ON open_items (reference_key)
    WHERE total_amount IS NOT NULL;
CREATE INDEX IF NOT EXISTS open_items_stored_reference_variants ON open_items
    USING gin (cash_reference_variants(reference_key)) WITH (fastupdate = off)
    WHERE total_amount IS NOT NULL;
DROP INDEX IF EXISTS open_items_reference_key;
DROP INDEX IF EXISTS open_items_reference_variants;
ANALYZE open_items;
