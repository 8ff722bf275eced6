"""SQL for collections' accounts: customers, open invoices as of a day, the dunning ledger,
notices, tasks, contacts, plans, escalations, holds and write-offs."""
from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.collections.domain.family import ParentChange

# One daily run at a time per customer (API, CLI, CronJob, replicas), held by the customer's
# transaction: a second run waits for that customer, then finds every action already in the
# ledger. The ledger's unique constraint is the guarantee; the lock only keeps two runs from
# splitting one customer's consolidated notice between them. Other customers are not held up.
CUSTOMER_RUN_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('ledgerline:collections:dunning:' || :c, 0))"

CUSTOMER_DEFAULTS: dict[str, Any] = {
    "name": None, "currency": None, "credit_limit": None, "registered_on": None, "language": "en",
    "time_zone": "UTC", "email": None, "postal_address": None, "customer_type": "default",
    "do_not_contact": False, "consent": {}, "strategy_id": None, "dunning_paused": False, "collector_id": None,
    "segment": None, "risk_score": None, "risk_factors": None, "scored_on": None, "version": 0,
}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def get_customer(conn: AsyncConnection, customer_id: str) -> dict[str, Any]:
    row = (await conn.execute(text("SELECT * FROM customers WHERE customer_id = :c"),
                              {"c": customer_id})).mappings().first()
    return _customer(row) if row else {**CUSTOMER_DEFAULTS, "customer_id": customer_id, "known": False}


def _customer(row: Any) -> dict[str, Any]:
    customer = {**CUSTOMER_DEFAULTS, **dict(row), "known": True}
    customer["consent"] = _json(customer["consent"]) or {}
    customer["risk_factors"] = _json(customer["risk_factors"])
    return customer


async def ensure_customer(conn: AsyncConnection, customer_id: str) -> None:
    await conn.execute(text("INSERT INTO customers (customer_id) VALUES (:c) ON CONFLICT DO NOTHING"),
                       {"c": customer_id})


async def register_customer(conn: AsyncConnection, *, customer_id: str, name: str, currency: str,
                            credit_limit: Decimal, registered_on: date) -> None:
    await conn.execute(
        text("INSERT INTO customers (customer_id, name, currency, credit_limit, registered_on)"
             " VALUES (:c, :n, :cur, :l, :d) ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name,"
             " currency = excluded.currency, credit_limit = excluded.credit_limit,"
             " registered_on = excluded.registered_on"),
        {"c": customer_id, "n": name, "cur": currency, "l": credit_limit, "d": registered_on})


def registration_row(*, event_id: str, customer_id: str, name: str, currency: str, credit_limit: Decimal | None,
                     registered_on: date) -> dict[str, Any]:
    return {"e": event_id, "c": customer_id, "n": name, "cur": currency, "l": credit_limit, "d": registered_on}


async def register_customers(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """registration_row()s in event order, with what register_customer and record_credit_limit
    one by one would leave, in three statements: each customer's last registration (an upsert
    sets every column), every limit into the history in event order (recorded_seq breaks ties of
    a date), and the latest-effective limit for each customer whose last registration had one
    (one without a limit leaves it empty, as its upsert did)."""
    if not rows:
        return
    last = list({row["c"]: row for row in rows}.values())
    await conn.execute(text(
        "INSERT INTO customers (customer_id, name, currency, credit_limit, registered_on)"
        " SELECT * FROM unnest(CAST(:c AS text[]), CAST(:n AS text[]), CAST(:cur AS text[]),"
        " CAST(:l AS numeric[]), CAST(:d AS date[])) AS r ORDER BY 1"
        " ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name, currency = excluded.currency,"
        " credit_limit = excluded.credit_limit, registered_on = excluded.registered_on"),
        {k: [row[k] for row in last] for k in ("c", "n", "cur", "l", "d")})
    limits = [row for row in rows if row["l"] is not None]
    if not limits:
        return
    await conn.execute(text(
        "INSERT INTO credit_limit_history (event_id, customer_id, effective_on, credit_limit)"
        " SELECT e, c, d, l FROM unnest(CAST(:e AS text[]), CAST(:c AS text[]), CAST(:d AS date[]),"
        " CAST(:l AS numeric[])) WITH ORDINALITY AS r(e, c, d, l, ord) ORDER BY ord"
        " ON CONFLICT (event_id) DO NOTHING"),
        {k: [row[k] for row in limits] for k in ("e", "c", "d", "l")})
    await conn.execute(text(
        "UPDATE customers SET credit_limit = (SELECT h.credit_limit FROM credit_limit_history h"
        " WHERE h.customer_id = customers.customer_id ORDER BY h.effective_on DESC, h.recorded_seq DESC LIMIT 1)"
        " WHERE customer_id = ANY(CAST(:c AS text[]))"),
        {"c": sorted(row["c"] for row in last if row["l"] is not None)})


async def update_customer(conn: AsyncConnection, customer_id: str, fields: dict[str, Any]) -> None:
    await ensure_customer(conn, customer_id)
    if not fields:
        return
    sets = ", ".join(f"{name} = CAST(:{name} AS jsonb)" if name in ("consent", "risk_factors") else f"{name} = :{name}"
                     for name in fields)
    params = {name: json.dumps(value) if name in ("consent", "risk_factors") else value
              for name, value in fields.items()}
    await conn.execute(text(f"UPDATE customers SET {sets} WHERE customer_id = :customer_id"),
                       {**params, "customer_id": customer_id})


async def get_invoice(conn: AsyncConnection, invoice_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM invoices WHERE invoice_id = :i"), {"i": invoice_id})).mappings().first()
    return dict(row) if row else None


async def set_invoice_strategy(conn: AsyncConnection, invoice_id: str, strategy_id: str | None, paused: bool) -> None:
    await conn.execute(text("UPDATE invoices SET strategy_id = :s, dunning_paused = :p WHERE invoice_id = :i"),
                       {"s": strategy_id, "p": paused, "i": invoice_id})


async def advance_invoices(conn: AsyncConnection, invoice_ids: Sequence[str], on: date) -> None:
    await conn.execute(text("UPDATE invoices SET advanced_on = :d WHERE invoice_id = ANY(:ids)"),
                       {"d": on, "ids": list(invoice_ids)})


_OPEN_BALANCE = """
i.total_amount
  - coalesce((SELECT sum(amount) FROM payments_applied p WHERE p.invoice_id = i.invoice_id
              AND p.value_date <= :d), 0)
  - coalesce((SELECT sum(amount) FROM credit_memos m WHERE m.invoice_id = i.invoice_id
              AND m.issue_date <= :d), 0)
  + coalesce((SELECT sum(amount) FROM balance_adjustments a WHERE a.invoice_id = i.invoice_id
              AND a.effective_on <= :d), 0)
"""

_OPEN_INVOICES = f"""
SELECT i.invoice_id, coalesce(i.invoice_number, i.invoice_id) AS invoice_number, i.customer_id, i.currency,
       i.total_amount, i.issue_date, i.due_date, i.strategy_id, i.dunning_paused, i.advanced_on,
       ({_OPEN_BALANCE}) AS open_balance,
       EXISTS (SELECT 1 FROM disputes d WHERE d.invoice_id = i.invoice_id AND d.opened_on <= :d
               AND (d.resolved_on IS NULL OR d.resolved_on > :d)) AS disputed
FROM invoices i
WHERE i.issue_date <= :d AND (CAST(:c AS text) IS NULL OR i.customer_id = :c)
ORDER BY i.customer_id, i.due_date, i.invoice_id
"""


# What the worklist needs of each customer's invoices: only those still open at the end of the
# day (an invoice settled in full counts nowhere in a worklist, neither past due nor in aging),
# with what is owed on them, the settlements of the customers' invoices summed once per invoice.
_WORKLIST_INVOICES = """
WITH mine AS (
    SELECT i.invoice_id, i.customer_id, i.currency, i.total_amount, i.due_date
    FROM invoices i WHERE i.issue_date <= :d AND i.customer_id = ANY(:ids)),
settled AS (
    SELECT s.invoice_id, sum(s.amount) AS amount FROM (
        SELECT p.invoice_id, p.amount FROM payments_applied p JOIN mine USING (invoice_id) WHERE p.value_date <= :d
        UNION ALL SELECT m.invoice_id, m.amount FROM credit_memos m JOIN mine USING (invoice_id)
                  WHERE m.issue_date <= :d
        UNION ALL SELECT a.invoice_id, -a.amount FROM balance_adjustments a JOIN mine USING (invoice_id)
                  WHERE a.effective_on <= :d) s
    GROUP BY s.invoice_id)
SELECT o.customer_id, o.currency, o.due_date, o.open_balance,
       EXISTS (SELECT 1 FROM disputes d WHERE d.invoice_id = o.invoice_id AND d.opened_on <= :d
               AND (d.resolved_on IS NULL OR d.resolved_on > :d)) AS disputed
FROM (SELECT mine.*, mine.total_amount - coalesce(settled.amount, 0) AS open_balance
      FROM mine LEFT JOIN settled USING (invoice_id)) o
WHERE o.open_balance > 0
ORDER BY o.customer_id, o.due_date, o.invoice_id
"""


async def invoices_as_of(conn: AsyncConnection, as_of: date, customer_id: str | None = None) -> list[dict[str, Any]]:
    """Every invoice issued by as_of with what was owed on it at the end of that day."""
    rows = await conn.execute(text(_OPEN_INVOICES), {"d": as_of, "c": customer_id})
    return [dict(r) for r in rows.mappings()]


async def customers_to_run(conn: AsyncConnection, as_of: date) -> list[str]:
    """Customers the daily run has something to do for: an invoice open at the end of as_of, or
    an active credit hold (which may be released)."""
    rows = await conn.execute(text(
        f"SELECT DISTINCT i.customer_id FROM invoices i WHERE i.issue_date <= :d AND ({_OPEN_BALANCE}) > 0"
        " UNION SELECT customer_id FROM credit_holds WHERE released_on IS NULL ORDER BY 1"), {"d": as_of})
    return list(rows.scalars())


async def lock_customer_run(conn: AsyncConnection, customer_id: str) -> None:
    await conn.execute(text(CUSTOMER_RUN_LOCK), {"c": customer_id})


async def settlement_movements(conn: AsyncConnection, customer_id: str, as_of: date) -> list[tuple[str, date, Decimal]]:
    """What reduced each of the customer's invoices and when (payments, credits, adjustments)."""
    rows = await conn.execute(text(
        "SELECT p.invoice_id, p.value_date AS on_date, p.amount FROM payments_applied p JOIN invoices i USING (invoice_id)"
        "  WHERE i.customer_id = :c AND p.value_date <= :d"
        " UNION ALL SELECT m.invoice_id, m.issue_date, m.amount FROM credit_memos m JOIN invoices i USING (invoice_id)"
        "  WHERE i.customer_id = :c AND m.issue_date <= :d"
        " UNION ALL SELECT a.invoice_id, a.effective_on, -a.amount FROM balance_adjustments a"
        "  JOIN invoices i USING (invoice_id) WHERE i.customer_id = :c AND a.effective_on <= :d"
        " ORDER BY 2"), {"c": customer_id, "d": as_of})
    return [(r.invoice_id, r.on_date, Decimal(r.amount)) for r in rows]


async def count_disputes(conn: AsyncConnection, customer_id: str, as_of: date) -> int:
    return int((await conn.execute(text("SELECT count(*) FROM disputes WHERE customer_id = :c AND opened_on <= :d"),
                                   {"c": customer_id, "d": as_of})).scalar_one())


async def count_broken_commitments(conn: AsyncConnection, customer_id: str, as_of: date) -> int:
    """Broken promises not later paid in full, and broken payment plans."""
    return int((await conn.execute(text(
        "SELECT (SELECT count(*) FROM promises WHERE customer_id = :c AND status = 'broken' AND broken_on <= :d"
        "        AND (settled_late_on IS NULL OR settled_late_on > :d))"
        " + (SELECT count(*) FROM payment_plans WHERE customer_id = :c AND status = 'broken' AND ended_on <= :d)"),
        {"c": customer_id, "d": as_of})).scalar_one())


async def invoices_under_commitment(conn: AsyncConnection, customer_id: str, as_of: date) -> set[str]:
    """Invoices whose dunning waits: named by an open promise still in its window, or by an
    active payment plan."""
    rows = await conn.execute(text(
        "SELECT pi.invoice_id FROM promises p JOIN promise_invoices pi USING (promise_id)"
        " WHERE p.customer_id = :c AND p.status = 'open' AND p.made_on <= :d"
        "   AND p.promise_date + p.grace_days >= :d"
        " UNION SELECT unnest(invoice_ids) FROM payment_plans WHERE customer_id = :c AND status = 'active'"
        "   AND agreed_on <= :d"), {"c": customer_id, "d": as_of})
    return set(rows.scalars())


# -- strategies -------------------------------------------------------------------------------

async def insert_strategy(conn: AsyncConnection, *, strategy_id: str, version: int, name: str,
                          steps: list[dict[str, Any]], created_on: date) -> bool:
    inserted = (await conn.execute(text(
        "INSERT INTO strategies (strategy_id, version, name, steps, created_on)"
        " VALUES (:s, :v, :n, CAST(:steps AS jsonb), :d) ON CONFLICT DO NOTHING RETURNING 1"),
        {"s": strategy_id, "v": version, "n": name, "steps": json.dumps(steps), "d": created_on})).first()
    return inserted is not None


async def latest_strategy(conn: AsyncConnection, strategy_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM strategies WHERE strategy_id = :s ORDER BY version DESC LIMIT 1"),
                              {"s": strategy_id})).mappings().first()
    return {**dict(row), "steps": _json(row["steps"])} if row else None


async def strategy_version(conn: AsyncConnection, strategy_id: str, version: int) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM strategies WHERE strategy_id = :s AND version = :v"),
                              {"s": strategy_id, "v": version})).mappings().first()
    return {**dict(row), "steps": _json(row["steps"])} if row else None


async def list_strategies(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(text(
        "SELECT DISTINCT ON (strategy_id) * FROM strategies ORDER BY strategy_id, version DESC"))
    return [{**dict(r), "steps": _json(r["steps"])} for r in rows.mappings()]


# -- compliance -------------------------------------------------------------------------------

async def compliance_policy(conn: AsyncConnection, customer_type: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM compliance_policies WHERE customer_type = :t"),
                              {"t": customer_type})).mappings().first()
    return dict(row) if row else None


async def upsert_compliance_policy(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(text(
        "INSERT INTO compliance_policies (customer_type, max_attempts, window_days, quiet_start, quiet_end)"
        " VALUES (:customer_type, :max_attempts, :window_days, :quiet_start, :quiet_end)"
        " ON CONFLICT (customer_type) DO UPDATE SET max_attempts = excluded.max_attempts,"
        " window_days = excluded.window_days, quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end"),
        row)


async def list_compliance_policies(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(text("SELECT * FROM compliance_policies ORDER BY customer_type"))
    return [dict(r) for r in rows.mappings()]


async def contact_attempts(conn: AsyncConnection, customer_id: str, since: date, until: date) -> int:
    """Contact attempts in [since, until]: notices, call tasks and logged outbound contacts."""
    return int((await conn.execute(text(
        "SELECT (SELECT count(*) FROM notices WHERE customer_id = :c AND sent_on BETWEEN :a AND :b)"
        " + (SELECT count(*) FROM call_tasks WHERE customer_id = :c AND due_on BETWEEN :a AND :b)"
        " + (SELECT count(*) FROM contacts WHERE customer_id = :c AND contacted_on BETWEEN :a AND :b"
        "    AND kind IN ('call', 'email', 'letter', 'sms'))"),
        {"c": customer_id, "a": since, "b": until})).scalar_one())


# -- the dunning ledger -----------------------------------------------------------------------

async def done_steps(conn: AsyncConnection, invoice_ids: Sequence[str]) -> dict[tuple[str, str], set[str]]:
    """(invoice_id, strategy_id) -> step ids done or superseded under any version."""
    rows = await conn.execute(text(
        "SELECT invoice_id, strategy_id, step_id FROM dunning_actions WHERE invoice_id = ANY(:ids)"),
        {"ids": list(invoice_ids)})
    done: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        done.setdefault((r.invoice_id, r.strategy_id), set()).add(r.step_id)
    return done


async def record_actions(conn: AsyncConnection, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Insert ledger rows; returns the (invoice_id, step_id) pairs this call inserted. A row
    already there (a repeated or concurrent run) is left alone and not returned."""
    inserted: set[tuple[str, str]] = set()
    for row in rows:
        got = (await conn.execute(text(
            "INSERT INTO dunning_actions (customer_id, strategy_id, strategy_version, step_id, invoice_id, channel,"
            " outcome, reference_id, acted_on) VALUES (:customer_id, :strategy_id, :strategy_version, :step_id,"
            " :invoice_id, :channel, :outcome, :reference_id, :acted_on)"
            " ON CONFLICT ON CONSTRAINT dunning_actions_once DO NOTHING RETURNING invoice_id, step_id"),
            row)).first()
        if got is not None:
            inserted.add((got.invoice_id, got.step_id))
    return inserted


async def record_block(conn: AsyncConnection, row: dict[str, Any]) -> bool:
    got = (await conn.execute(text(
        "INSERT INTO dunning_blocks (customer_id, strategy_id, strategy_version, step_id, channel, reason, scope_key,"
        " invoice_ids, blocked_on) VALUES (:customer_id, :strategy_id, :strategy_version, :step_id, :channel,"
        " :reason, :scope_key, :invoice_ids, :blocked_on)"
        " ON CONFLICT ON CONSTRAINT dunning_blocks_once DO NOTHING RETURNING 1"), row)).first()
    return got is not None


async def list_actions(conn: AsyncConnection, customer_id: str | None) -> list[dict[str, Any]]:
    rows = await conn.execute(text(
        "SELECT * FROM dunning_actions WHERE CAST(:c AS text) IS NULL OR customer_id = :c ORDER BY created_seq"),
        {"c": customer_id})
    return [dict(r) for r in rows.mappings()]


async def list_blocks(conn: AsyncConnection, customer_id: str | None) -> list[dict[str, Any]]:
    rows = await conn.execute(text(
        "SELECT * FROM dunning_blocks WHERE CAST(:c AS text) IS NULL OR customer_id = :c ORDER BY created_seq"),
        {"c": customer_id})
    return [dict(r) for r in rows.mappings()]


# -- notices ----------------------------------------------------------------------------------

async def insert_notice(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(text(
        "INSERT INTO notices (notice_id, customer_id, strategy_id, strategy_version, step_id, channel, template,"
        " language, invoice_ids, currency, total_amount, sent_on, recipient, subject, body, html_body, pdf, delivery)"
        " VALUES (:notice_id, :customer_id, :strategy_id, :strategy_version, :step_id, :channel, :template,"
        " :language, :invoice_ids, :currency, :total_amount, :sent_on, :recipient, :subject, :body, :html_body, :pdf,"
        " :delivery)"), row)


_NOTICE_COLUMNS = ("notice_id, customer_id, strategy_id, strategy_version, step_id, channel, template, language,"
                   " invoice_ids, currency, total_amount, sent_on, recipient, subject, delivery, attempts,"
                   " delivered_at, last_error, created_seq")


async def get_notice(conn: AsyncConnection, notice_id: str, *, with_pdf: bool = False) -> dict[str, Any] | None:
    columns = _NOTICE_COLUMNS + (", pdf" if with_pdf else "")
    row = (await conn.execute(text(f"SELECT {columns} FROM notices WHERE notice_id = :n"),
                              {"n": notice_id})).mappings().first()
    return dict(row) if row else None


async def list_notices(conn: AsyncConnection, *, customer_id: str | None, channel: str | None,
                       delivery: str | None, after: int | None, limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(text(
        f"SELECT {_NOTICE_COLUMNS} FROM notices WHERE (CAST(:c AS text) IS NULL OR customer_id = :c)"
        " AND (CAST(:ch AS text) IS NULL OR channel = :ch) AND (CAST(:dl AS text) IS NULL OR delivery = :dl)"
        " AND (CAST(:after AS bigint) IS NULL OR created_seq > :after) ORDER BY created_seq LIMIT :limit"),
        {"c": customer_id, "ch": channel, "dl": delivery, "after": after, "limit": limit})
    return [dict(r) for r in rows.mappings()]


async def claim_pending_email(conn: AsyncConnection) -> dict[str, Any] | None:
    """The oldest email still to send, locked for this transaction; others skip it."""
    row = (await conn.execute(text(
        "SELECT notice_id, recipient, subject, body, html_body, pdf, attempts FROM notices WHERE delivery = 'pending'"
        " ORDER BY created_seq LIMIT 1 FOR UPDATE SKIP LOCKED"))).mappings().first()
    return dict(row) if row else None


async def mark_delivery(conn: AsyncConnection, notice_id: str, *, delivery: str, error: str | None) -> None:
    await conn.execute(text(
        "UPDATE notices SET delivery = :dl, attempts = attempts + 1, last_error = :e,"
        " delivered_at = CASE WHEN :dl = 'sent' THEN now() ELSE delivered_at END WHERE notice_id = :n"),
        {"dl": delivery, "e": error, "n": notice_id})


# -- tasks, escalations, holds ----------------------------------------------------------------

async def insert_call_task(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(text(
        "INSERT INTO call_tasks (task_id, customer_id, strategy_id, step_id, invoice_ids, collector_id, due_on)"
        " VALUES (:task_id, :customer_id, :strategy_id, :step_id, :invoice_ids, :collector_id, :due_on)"), row)


async def list_call_tasks(conn: AsyncConnection, *, collector_id: str | None, customer_id: str | None,
                          status: str | None) -> list[dict[str, Any]]:
    rows = await conn.execute(text(
        "SELECT * FROM call_tasks WHERE (CAST(:col AS text) IS NULL OR collector_id = :col)"
        " AND (CAST(:c AS text) IS NULL OR customer_id = :c) AND (CAST(:s AS text) IS NULL OR status = :s)"
        " ORDER BY created_seq"), {"col": collector_id, "c": customer_id, "s": status})
    return [dict(r) for r in rows.mappings()]


async def close_call_tasks(conn: AsyncConnection, customer_id: str, collector_id: str | None) -> None:
    await conn.execute(text(
        "UPDATE call_tasks SET status = 'done' WHERE customer_id = :c AND status = 'open'"
        " AND (CAST(:col AS text) IS NULL OR collector_id = :col OR collector_id IS NULL)"),
        {"c": customer_id, "col": collector_id})


async def insert_escalation(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(text(
        "INSERT INTO escalations (escalation_id, customer_id, escalated_to, summary, recommended_action,"
        " invoice_ids, currency, overdue_amount, escalated_on) VALUES (:escalation_id, :customer_id,"
        " :escalated_to, :summary, :recommended_action, :invoice_ids, :currency, :overdue_amount, :escalated_on)"),
        row)


async def list_escalations(conn: AsyncConnection, customer_id: str | None) -> list[dict[str, Any]]:
    rows = await conn.execute(text(
        "SELECT * FROM escalations WHERE CAST(:c AS text) IS NULL OR customer_id = :c ORDER BY created_seq"),
        {"c": customer_id})
    return [dict(r) for r in rows.mappings()]


async def active_hold(conn: AsyncConnection, customer_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM credit_holds WHERE customer_id = :c AND released_on IS NULL"),
                              {"c": customer_id})).mappings().first()
    return dict(row) if row else None


async def place_hold(conn: AsyncConnection, *, hold_id: str, customer_id: str, reason: str, placed_on: date) -> None:
    await conn.execute(text("INSERT INTO credit_holds (hold_id, customer_id, reason, placed_on)"
                            " VALUES (:h, :c, :r, :d)"), {"h": hold_id, "c": customer_id, "r": reason, "d": placed_on})


async def release_hold(conn: AsyncConnection, hold_id: str, reason: str, released_on: date) -> None:
    await conn.execute(text("UPDATE credit_holds SET released_on = :d, release_reason = :r WHERE hold_id = :h"),
                       {"h": hold_id, "r": reason, "d": released_on})


async def list_holds(conn: AsyncConnection, customer_id: str | None, active_only: bool) -> list[dict[str, Any]]:
    rows = await conn.execute(text(
        "SELECT * FROM credit_holds WHERE (CAST(:c AS text) IS NULL OR customer_id = :c)"
        " AND (NOT :a OR released_on IS NULL) ORDER BY created_seq"), {"c": customer_id, "a": active_only})
    return [dict(r) for r in rows.mappings()]


# -- contacts and worklists -------------------------------------------------------------------

async def insert_contact(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(text(
        "INSERT INTO contacts (contact_id, customer_id, collector_id, kind, outcome, note, contacted_on,"
        " next_follow_up_on) VALUES (:contact_id, :customer_id, :collector_id, :kind, :outcome, :note,"
        " :contacted_on, :next_follow_up_on)"), row)


async def list_contacts(conn: AsyncConnection, customer_id: str | None, collector_id: str | None) -> list[dict[str, Any]]:
    rows = await conn.execute(text(
        "SELECT * FROM contacts WHERE (CAST(:c AS text) IS NULL OR customer_id = :c)"
        " AND (CAST(:col AS text) IS NULL OR collector_id = :col) ORDER BY contacted_on, created_seq"),
        {"c": customer_id, "col": collector_id})
    return [dict(r) for r in rows.mappings()]


async def collector_customers(conn: AsyncConnection, collector_id: str) -> list[str]:
    rows = await conn.execute(text("SELECT customer_id FROM customers WHERE collector_id = :col"),
                              {"col": collector_id})
    return list(rows.scalars())


async def collectors_of(conn: AsyncConnection, customer_ids: Sequence[str]) -> dict[str, str | None]:
    rows = await conn.execute(text("SELECT customer_id, collector_id FROM customers WHERE customer_id = ANY(:ids)"),
                              {"ids": list(customer_ids)})
    return {r.customer_id: r.collector_id for r in rows}


async def worklist_inputs(conn: AsyncConnection, customer_ids: Sequence[str], as_of: date) -> list[dict[str, Any]]:
    """Everything the worklist ranks, for many customers at once (a few set-based queries, not a
    few per customer, so a book of thousands of accounts ranks in well under a second): each
    customer's `customer_id`, `name`, `segment` and `risk_score`, with `invoices` (those open at
    the end of as_of: currency, due_date, open_balance, disputed; by due date), `last_contact_on`,
    `next_follow_up_on` (of the latest contact), `promise_due_today`, `broken` (as
    count_broken_commitments) and `open_call_tasks` (task ids in creation order). Rows are read
    as tuples: a book's worth of row mappings costs more than the queries."""
    ids = sorted(set(customer_ids))
    if not ids:
        return []
    params = {"ids": ids, "d": as_of}
    customers = {c: {"customer_id": c, "name": None, "segment": None, "risk_score": None} for c in ids}
    for customer_id, name, segment, risk_score in await conn.execute(text(
            "SELECT customer_id, name, segment, risk_score FROM customers WHERE customer_id = ANY(:ids)"), params):
        customers[customer_id].update(name=name, segment=segment, risk_score=risk_score)
    for c in customers.values():
        c.update(invoices=[], last_contact_on=None, next_follow_up_on=None, promise_due_today=False, broken=0,
                 open_call_tasks=[])
    for customer_id, currency, due_date, open_balance, disputed in await conn.execute(text(_WORKLIST_INVOICES), params):
        customers[customer_id]["invoices"].append({"currency": currency, "due_date": due_date,
                                                   "open_balance": open_balance, "disputed": disputed})
    for r in (await conn.execute(text(
            "SELECT DISTINCT ON (customer_id) customer_id, next_follow_up_on,"
            " max(contacted_on) OVER (PARTITION BY customer_id) AS last_contact_on FROM contacts"
            " WHERE contacted_on <= :d AND customer_id = ANY(:ids)"
            " ORDER BY customer_id, contacted_on DESC, created_seq DESC"), params)).mappings():
        customers[r["customer_id"]].update(last_contact_on=r["last_contact_on"], next_follow_up_on=r["next_follow_up_on"])
    for r in (await conn.execute(text(
            "SELECT DISTINCT customer_id FROM promises WHERE status = 'open' AND promise_date = :d"
            " AND customer_id = ANY(:ids)"), params)).mappings():
        customers[r["customer_id"]]["promise_due_today"] = True
    for r in (await conn.execute(text(
            "SELECT customer_id, count(*) AS n FROM ("
            "  SELECT customer_id FROM promises WHERE status = 'broken' AND broken_on <= :d"
            "   AND (settled_late_on IS NULL OR settled_late_on > :d)"
            "  UNION ALL SELECT customer_id FROM payment_plans WHERE status = 'broken' AND ended_on <= :d) b"
            " WHERE customer_id = ANY(:ids) GROUP BY customer_id"), params)).mappings():
        customers[r["customer_id"]]["broken"] = int(r["n"])
    for r in (await conn.execute(text(
            "SELECT customer_id, task_id FROM call_tasks WHERE status = 'open' AND customer_id = ANY(:ids)"
            " ORDER BY created_seq"), params)).mappings():
        customers[r["customer_id"]]["open_call_tasks"].append(r["task_id"])
    return list(customers.values())


# -- the account's history ------------------------------------------------------------------

async def account_stream_ids(conn: AsyncConnection, customer_id: str) -> list[str]:
    """The streams of collections' event store that concern a customer: its account stream and
    the streams of its promises, plans, write-offs, escalations, credit holds and notices (the
    read models name them, so the event store is read by stream, on its unique index)."""
    rows = await conn.execute(text(
        "SELECT 'promise-' || promise_id FROM promises WHERE customer_id = :c"
        " UNION ALL SELECT 'payment_plan-' || plan_id FROM payment_plans WHERE customer_id = :c"
        " UNION ALL SELECT 'write_off-' || write_off_id FROM write_offs WHERE customer_id = :c"
        " UNION ALL SELECT 'escalation-' || escalation_id FROM escalations WHERE customer_id = :c"
        " UNION ALL SELECT 'credit_hold-' || hold_id FROM credit_holds WHERE customer_id = :c"
        " UNION ALL SELECT 'notice-' || notice_id FROM notices WHERE customer_id = :c"), {"c": customer_id})
    return [f"collections_account-{customer_id}", *rows.scalars()]


# -- account hierarchies ----------------------------------------------------------------------

async def record_parent_change(conn: AsyncConnection, *, event_id: str, customer_id: str,
                               parent_customer_id: str | None, effective_on: date, stream_version: int) -> None:
    await conn.execute(text(
        "INSERT INTO customer_parents (event_id, customer_id, parent_customer_id, effective_on, stream_version)"
        " VALUES (:e, :c, :p, :d, :v) ON CONFLICT (event_id) DO NOTHING"),
        {"e": event_id, "c": customer_id, "p": parent_customer_id, "d": effective_on, "v": stream_version})


async def parent_changes(conn: AsyncConnection, as_of: date) -> list[ParentChange]:
    """Every parent change effective on or before as_of (domain/family.py picks the latest)."""
    rows = await conn.execute(text("SELECT customer_id, parent_customer_id, effective_on, stream_version"
                                   " FROM customer_parents WHERE effective_on <= :d"), {"d": as_of})
    return [ParentChange(r.customer_id, r.parent_customer_id, r.effective_on, r.stream_version) for r in rows]


async def names_of(conn: AsyncConnection, customer_ids: Sequence[str]) -> dict[str, str | None]:
    rows = await conn.execute(text("SELECT customer_id, name FROM customers WHERE customer_id = ANY(:ids)"),
                              {"ids": list(customer_ids)})
    return {r.customer_id: r.name for r in rows}


async def family_invoices_as_of(conn: AsyncConnection, customer_ids: Sequence[str],
                                as_of: date) -> list[dict[str, Any]]:
    """invoices_as_of for several customers at once (a family)."""
    query = _OPEN_INVOICES.replace("AND (CAST(:c AS text) IS NULL OR i.customer_id = :c)",
                                   "AND i.customer_id = ANY(:ids)")
    rows = await conn.execute(text(query), {"d": as_of, "ids": list(customer_ids)})
    return [dict(r) for r in rows.mappings()]


# -- plans ------------------------------------------------------------------------------------

async def insert_plan(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(text(
        "INSERT INTO payment_plans (plan_id, customer_id, invoice_ids, currency, total_amount, installments,"
        " agreed_on, grace_days, status, version) VALUES (:plan_id, :customer_id, :invoice_ids, :currency,"
        " :total_amount, CAST(:installments AS jsonb), :agreed_on, :grace_days, 'active', :version)"),
        {**row, "installments": json.dumps(row["installments"])})


async def update_plan(conn: AsyncConnection, plan_id: str, *, status: str, state: dict[str, str],
                      ended_on: date | None, version: int) -> None:
    await conn.execute(text(
        "UPDATE payment_plans SET status = :s, installments_state = CAST(:st AS jsonb), ended_on = :e,"
        " version = :v WHERE plan_id = :p"),
        {"s": status, "st": json.dumps(state), "e": ended_on, "v": version, "p": plan_id})


def _plan(row: Any) -> dict[str, Any]:
    plan = dict(row)
    plan["installments"] = _json(plan["installments"])
    plan["installments_state"] = _json(plan["installments_state"]) or {}
    return plan


async def get_plan(conn: AsyncConnection, plan_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM payment_plans WHERE plan_id = :p"), {"p": plan_id})).mappings().first()
    return _plan(row) if row else None


async def list_plans(conn: AsyncConnection, *, customer_id: str | None, status: str | None) -> list[dict[str, Any]]:
    rows = await conn.execute(text(
        "SELECT * FROM payment_plans WHERE (CAST(:c AS text) IS NULL OR customer_id = :c)"
        " AND (CAST(:s AS text) IS NULL OR status = :s) ORDER BY created_seq"), {"c": customer_id, "s": status})
    return [_plan(r) for r in rows.mappings()]


async def active_plan_ids(conn: AsyncConnection, as_of: date) -> list[str]:
    rows = await conn.execute(text(
        "SELECT plan_id FROM payment_plans WHERE status = 'active' AND agreed_on <= :d ORDER BY created_seq"),
        {"d": as_of})
    return list(rows.scalars())


# -- write-offs -------------------------------------------------------------------------------

async def set_approver(conn: AsyncConnection, approver_id: str, role: str) -> None:
    await conn.execute(text("INSERT INTO approvers (approver_id, role) VALUES (:a, :r)"
                            " ON CONFLICT (approver_id) DO UPDATE SET role = excluded.role"),
                       {"a": approver_id, "r": role})


async def approver_role(conn: AsyncConnection, approver_id: str) -> str | None:
    return (await conn.execute(text("SELECT role FROM approvers WHERE approver_id = :a"),
                               {"a": approver_id})).scalar_one_or_none()


async def insert_write_off(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(text(
        "INSERT INTO write_offs (write_off_id, invoice_id, customer_id, amount, currency, reason, requested_by,"
        " requested_on, status, version) VALUES (:write_off_id, :invoice_id, :customer_id, :amount, :currency,"
        " :reason, :requested_by, :requested_on, 'requested', :version)"), row)


async def decide_write_off(conn: AsyncConnection, write_off_id: str, *, status: str, decided_by: str,
                           decided_on: date, reason: str | None, version: int) -> None:
    await conn.execute(text(
        "UPDATE write_offs SET status = :s, decided_by = :b, decided_on = :d, decision_reason = :r, version = :v"
        " WHERE write_off_id = :w"),
        {"s": status, "b": decided_by, "d": decided_on, "r": reason, "v": version, "w": write_off_id})


async def get_write_off(conn: AsyncConnection, write_off_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM write_offs WHERE write_off_id = :w"),
                              {"w": write_off_id})).mappings().first()
    return dict(row) if row else None


async def live_write_off_for(conn: AsyncConnection, invoice_id: str) -> str | None:
    return (await conn.execute(text(
        "SELECT write_off_id FROM write_offs WHERE invoice_id = :i AND status IN ('requested', 'approved')"),
        {"i": invoice_id})).scalar_one_or_none()


async def list_write_offs(conn: AsyncConnection, *, customer_id: str | None, status: str | None) -> list[dict[str, Any]]:
    rows = await conn.execute(text(
        "SELECT * FROM write_offs WHERE (CAST(:c AS text) IS NULL OR customer_id = :c)"
        " AND (CAST(:s AS text) IS NULL OR status = :s) ORDER BY created_seq"), {"c": customer_id, "s": status})
    return [dict(r) for r in rows.mappings()]


async def add_adjustment(conn: AsyncConnection, *, key: str, invoice_id: str, kind: str, amount: Decimal,
                         effective_on: date) -> None:
    await conn.execute(text(
        "INSERT INTO balance_adjustments (adjustment_key, invoice_id, kind, amount, effective_on)"
        " VALUES (:k, :i, :kind, :a, :d) ON CONFLICT (adjustment_key) DO NOTHING"),
        {"k": key, "i": invoice_id, "kind": kind, "a": amount, "d": effective_on})


async def record_dispute(conn: AsyncConnection, *, dispute_id: str, invoice_id: str, customer_id: str,
                         opened_on: date) -> None:
    await conn.execute(text("INSERT INTO disputes (dispute_id, invoice_id, customer_id, opened_on)"
                            " VALUES (:d, :i, :c, :o) ON CONFLICT (dispute_id) DO NOTHING"),
                       {"d": dispute_id, "i": invoice_id, "c": customer_id, "o": opened_on})


async def resolve_dispute(conn: AsyncConnection, *, dispute_id: str, invoice_id: str, customer_id: str,
                          resolved_on: date) -> None:
    # A resolution may arrive before its opening (topics are not ordered across each other).
    await conn.execute(text(
        "INSERT INTO disputes (dispute_id, invoice_id, customer_id, opened_on, resolved_on)"
        " VALUES (:d, :i, :c, :r, :r) ON CONFLICT (dispute_id) DO UPDATE SET resolved_on = excluded.resolved_on"),
        {"d": dispute_id, "i": invoice_id, "c": customer_id, "r": resolved_on})


async def record_disputes(conn: AsyncConnection, *, opened: Sequence[dict[str, Any]],
                          resolved: Sequence[dict[str, Any]]) -> None:
    """Dispute rows ({"d", "i", "c", "on"}) as record_dispute and then resolve_dispute one by one
    would leave them, in two statements: the caller keeps a dispute's resolution after its
    opening, and each dispute once among the resolutions (an upsert touches a row once)."""
    if opened:
        opened = list({row["d"]: row for row in reversed(opened)}.values())  # first of each dispute
        await conn.execute(text(
            "INSERT INTO disputes (dispute_id, invoice_id, customer_id, opened_on)"
            " SELECT * FROM unnest(CAST(:d AS text[]), CAST(:i AS text[]), CAST(:c AS text[]), CAST(:on AS date[]))"
            " AS r ORDER BY 1 ON CONFLICT (dispute_id) DO NOTHING"),
            {k: [row[k] for row in opened] for k in ("d", "i", "c", "on")})
    if resolved:
        await conn.execute(text(
            "INSERT INTO disputes (dispute_id, invoice_id, customer_id, opened_on, resolved_on)"
            " SELECT d, i, c, r, r FROM unnest(CAST(:d AS text[]), CAST(:i AS text[]), CAST(:c AS text[]),"
            " CAST(:on AS date[])) AS r(d, i, c, r) ORDER BY 1"
            " ON CONFLICT (dispute_id) DO UPDATE SET resolved_on = excluded.resolved_on"),
            {k: [row[k] for row in resolved] for k in ("d", "i", "c", "on")})


async def record_credit_limit(conn: AsyncConnection, *, event_id: str, customer_id: str, effective_on: date,
                              credit_limit: Decimal) -> None:
    await conn.execute(text("INSERT INTO credit_limit_history (event_id, customer_id, effective_on, credit_limit)"
                            " VALUES (:e, :c, :d, :l) ON CONFLICT (event_id) DO NOTHING"),
                       {"e": event_id, "c": customer_id, "d": effective_on, "l": credit_limit})
    # The account shows the latest-effective limit (scoring as of a date reads the history).
    await conn.execute(text(
        "UPDATE customers SET credit_limit = (SELECT h.credit_limit FROM credit_limit_history h"
        " WHERE h.customer_id = :c ORDER BY h.effective_on DESC, h.recorded_seq DESC LIMIT 1)"
        " WHERE customer_id = :c"), {"c": customer_id})


async def credit_limit_as_of(conn: AsyncConnection, customer_id: str, as_of: date) -> Decimal | None:
    """The limit in force on as_of (the latest effective on or before it; on one date, the last
    recorded); None when no limit was known by then."""
    value = (await conn.execute(text(
        "SELECT credit_limit FROM credit_limit_history WHERE customer_id = :c AND effective_on <= :d"
        " ORDER BY effective_on DESC, recorded_seq DESC LIMIT 1"), {"c": customer_id, "d": as_of})).scalar()
    return None if value is None else Decimal(value)
