-- Invoices issued without an invoice number get the next of this series (repository.next_invoice_numbers:
-- INV- and eight or more digits, each handed out once, skipping any a caller had given explicitly).
-- Before, the default was "INV-" and the first eight characters of the invoice id: caller ids
-- sharing them ("2024-000123", "2024-000124") collided with 409, and random ids did once the book
-- held some tens of thousands of invoices. Gaps are possible (a refused issue consumes its number),
-- as with any sequence; an ERP that needs gapless legal numbering sends its own numbers.
CREATE SEQUENCE IF NOT EXISTS invoice_number_seq;
