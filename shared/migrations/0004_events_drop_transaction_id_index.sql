-- Readers order and filter by (commit_order, global_position) since 0003 (index
-- events_commit_order_position); nothing reads by (transaction_id, global_position) any more, and
-- the index only cost every append a fifth index insert (issue 9: the write path).
DROP INDEX IF EXISTS events_commit_order;
