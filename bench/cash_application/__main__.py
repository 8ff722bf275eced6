"""Placeholder until the cash_application benchmark lands."""
raise SystemExit("bench.cash_application is not written yet")
