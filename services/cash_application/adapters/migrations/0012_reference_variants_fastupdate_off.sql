-- The one-edit variants index (0011) is searched once per variant of every reference an import
-- cannot place, thousands of times per chunk, while the same import updates open_items. With
-- GIN's default fastupdate, those updates queue in the index's pending list, and every search
-- scans the whole pending list until it is flushed: in the 100,000-receipt scale bench a probe
-- went from under 0.1 ms on a freshly loaded book to about 5.7 ms, chunk after chunk. Without the
-- pending list an update pays its index insertion at once, and a search reads only the index.
ALTER INDEX open_items_reference_variants SET (fastupdate = off);
SELECT gin_clean_pending_list('open_items_reference_variants'::regclass);  -- what an existing book queued
