-- Root cause by product line (issue 11, point 9): each invoice's lines' product lines (from
-- InvoiceIssued, in line order) and the invoice line a dispute names.
ALTER TABLE invoice_references ADD COLUMN IF NOT EXISTS product_lines jsonb NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE disputes ADD COLUMN IF NOT EXISTS line_number integer;
