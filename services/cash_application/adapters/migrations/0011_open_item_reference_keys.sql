-- Imports load only the open items a file can concern (issue 10): those of the customers the file
-- identifies, those its references name, and, for a reference that names none, those one edit
-- away. The matching engine's comparable form of an invoice number (normalise_reference in
-- services/cash_application/domain/matching.py: ASCII letters upper-cased, letters and digits
-- only, an RF creditor reference's head and INV/INVOICE/NO/... prefixes dropped, leading zeros
-- of a number dropped) is computed here by the same steps, so it can be indexed; a test holds the
-- two equal on the same references (tests/integration/cash_application/test_scoped_matching.py).
CREATE OR REPLACE FUNCTION cash_reference_key(reference text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    key text := regexp_replace(translate(reference, 'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'),
                               '[^0-9A-Z]', '', 'g');
    prefix text;
BEGIN
    IF key ~ '^RF[0-9]{2}[0-9A-Z]' THEN
        key := substr(key, 5);
    END IF;
    FOR round IN 1..2 LOOP  -- "Invoice No. 1001": two prefix words
        FOREACH prefix IN ARRAY ARRAY['INVOICES', 'INVOICE', 'INVOIC', 'INVNO', 'INV', 'NR', 'NO', 'RE'] LOOP
            IF starts_with(key, prefix) AND substr(key, length(prefix) + 1) ~ '[0-9]' THEN
                key := substr(key, length(prefix) + 1);
                EXIT;
            END IF;
        END LOOP;
    END LOOP;
    IF key ~ '^[0-9]+$' THEN
        key := coalesce(nullif(ltrim(key, '0'), ''), '0');
    END IF;
    RETURN key;
END
$$;

-- An open item's key: its number's, or its id's when it has no number (as the engine indexes it).
CREATE OR REPLACE FUNCTION cash_open_item_key(invoice_number text, invoice_id text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT cash_reference_key(coalesce(nullif(invoice_number, ''), invoice_id))
$$;

-- The key and, from four characters on, every form of it with one character deleted: two keys
-- one edit apart (insertion, deletion, substitution, transposition) share one of these.
CREATE OR REPLACE FUNCTION cash_reference_variants(key text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN length(key) < 4 THEN ARRAY[key]
                ELSE ARRAY[key] || ARRAY(SELECT DISTINCT overlay(key PLACING '' FROM i FOR 1)
                                         FROM generate_series(1, length(key)) AS i) END
$$;

CREATE INDEX IF NOT EXISTS open_items_reference_key ON open_items (cash_open_item_key(invoice_number, invoice_id))
    WHERE total_amount IS NOT NULL;
CREATE INDEX IF NOT EXISTS open_items_reference_variants ON open_items
    USING gin (cash_reference_variants(cash_open_item_key(invoice_number, invoice_id)))
    WHERE total_amount IS NOT NULL;
