"""Mechanisms shared by every Ledgerline service: event store, outbox relay, consumer runner,
money, problem details, idempotency, settings, telemetry and the public event contracts.

Nothing here knows an AR business rule; those live in services/<context>/domain.
"""
