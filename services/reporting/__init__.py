"""Reporting: read models only. Facts projected from every context's events (invoices, credit
memos, payments and their applications, promises, disputes), and the AR metrics computed from
them as of any date: aging, DSO, recovery rate, promise outcomes, a dashboard summary."""
