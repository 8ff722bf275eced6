-- Lines are recognised across imports by bank reference (cumulative intraday reports repeat them).
CREATE INDEX IF NOT EXISTS statement_lines_bank_reference ON statement_lines (bank_reference)
    WHERE bank_reference IS NOT NULL;
