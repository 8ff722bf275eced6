"""Invoicing: customers, payment terms, credit limits, invoices and credit memos."""
