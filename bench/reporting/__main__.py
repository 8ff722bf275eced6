"""Placeholder until the reporting benchmark lands."""
raise SystemExit("bench.reporting is not written yet")
