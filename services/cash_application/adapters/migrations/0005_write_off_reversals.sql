-- A small-balance write-off belongs to the application that justified it and is reversed with
-- it (SmallBalanceWriteOffReversed): the row stays, marked reversed, and no longer counts in
-- open_items.written_off_amount or payments.written_off_amount.
ALTER TABLE open_item_write_offs ADD COLUMN IF NOT EXISTS application_id text;
ALTER TABLE open_item_write_offs ADD COLUMN IF NOT EXISTS reversed_on date;
ALTER TABLE open_item_write_offs ADD COLUMN IF NOT EXISTS reversal_reason text;
