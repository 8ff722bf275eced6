-- Full reporting (issue 5): the facts of the remaining events, the inputs posted through the
-- API (FX rates, GL control totals, period closes), and one view of every dated movement on an
-- invoice's balance. Event facts are keyed by their natural key or event_id, so a redelivery
-- changes nothing and the result does not depend on arrival order. Tables fed by events are
-- listed in adapters/repository.FACT_TABLES (a rebuild truncates them); the posted inputs are
-- not facts of events and survive a rebuild.

-- PaymentApplied v2 carries the application's id, the matching rule and its confidence.
ALTER TABLE applications ADD COLUMN IF NOT EXISTS application_id text;
ALTER TABLE applications ADD COLUMN IF NOT EXISTS rule text;
ALTER TABLE applications ADD COLUMN IF NOT EXISTS confidence numeric(6, 3);
CREATE INDEX IF NOT EXISTS applications_value_date ON applications (value_date);

-- PaymentUnapplied: the invoice's balance grows by amount again from unapplied_on.
CREATE TABLE IF NOT EXISTS unapplications (
    event_id text PRIMARY KEY,
    application_id text NOT NULL,
    payment_id text NOT NULL,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    currency text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    unapplied_on date NOT NULL,
    reason text NOT NULL
);
CREATE INDEX IF NOT EXISTS unapplications_invoice ON unapplications (invoice_id, unapplied_on);

-- PaymentReturned: cash received reversed (the invoices are reopened by PaymentUnapplied).
CREATE TABLE IF NOT EXISTS payment_returns (
    event_id text PRIMARY KEY,
    payment_id text NOT NULL,
    customer_id text NOT NULL,
    currency text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    returned_on date NOT NULL,
    reason_code text NOT NULL
);

-- SmallBalanceWrittenOff: an adjustment lowering the invoice's balance from value_date.
CREATE TABLE IF NOT EXISTS adjustments (
    adjustment_id text PRIMARY KEY,
    payment_id text NOT NULL,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    currency text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    value_date date NOT NULL,
    reason_code text,
    event_id text NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS adjustments_invoice ON adjustments (invoice_id, value_date);

-- WriteOffApproved: bad debt, the balance falls by amount from approved_on.
CREATE TABLE IF NOT EXISTS write_offs (
    write_off_id text PRIMARY KEY,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    currency text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    approved_on date NOT NULL,
    reason text NOT NULL,
    event_id text NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS write_offs_invoice ON write_offs (invoice_id, approved_on);

-- AccountEscalated (recovery cohorts)
CREATE TABLE IF NOT EXISTS escalations (
    escalation_id text PRIMARY KEY,
    customer_id text NOT NULL,
    invoice_ids text[] NOT NULL,
    currency text NOT NULL,
    overdue_amount numeric(20, 4) NOT NULL,
    recommended_action text NOT NULL,
    escalated_on date NOT NULL,
    event_id text NOT NULL UNIQUE
);

-- CollectorAssigned / CustomerSegmented: the latest on or before a date applies.
CREATE TABLE IF NOT EXISTS collector_assignments (
    event_id text PRIMARY KEY,
    customer_id text NOT NULL,
    collector_id text NOT NULL,
    assigned_on date NOT NULL
);
CREATE INDEX IF NOT EXISTS collector_assignments_customer ON collector_assignments (customer_id, assigned_on);
CREATE TABLE IF NOT EXISTS customer_segments (
    event_id text PRIMARY KEY,
    customer_id text NOT NULL,
    segment text NOT NULL,
    risk_score integer NOT NULL,
    scored_on date NOT NULL
);
CREATE INDEX IF NOT EXISTS customer_segments_customer ON customer_segments (customer_id, scored_on);

-- PaymentPlanAgreed, one row per installment; InstallmentPaid / InstallmentMissed and
-- PaymentPlanCompleted / PaymentPlanBroken as outcome rows (one per event).
CREATE TABLE IF NOT EXISTS payment_plans (
    plan_id text PRIMARY KEY,
    customer_id text NOT NULL,
    invoice_ids text[] NOT NULL,
    currency text NOT NULL,
    total_amount numeric(20, 4) NOT NULL,
    agreed_on date NOT NULL,
    event_id text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS plan_installments (
    plan_id text NOT NULL,
    installment_number integer NOT NULL,
    customer_id text NOT NULL,
    currency text NOT NULL,
    due_date date NOT NULL,
    amount numeric(20, 4) NOT NULL,
    PRIMARY KEY (plan_id, installment_number)
);
CREATE TABLE IF NOT EXISTS installment_outcomes (
    event_id text PRIMARY KEY,
    plan_id text NOT NULL,
    installment_number integer NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('paid', 'missed')),
    amount numeric(20, 4) NOT NULL,
    paid_amount numeric(20, 4) NOT NULL,
    outcome_on date NOT NULL
);
CREATE TABLE IF NOT EXISTS plan_outcomes (
    event_id text PRIMARY KEY,
    plan_id text NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('completed', 'broken')),
    outcome_on date NOT NULL
);

-- DunningNoticeSent / CallTaskCreated (collector activity)
CREATE TABLE IF NOT EXISTS dunning_notices (
    notice_id text PRIMARY KEY,
    customer_id text NOT NULL,
    channel text NOT NULL,
    currency text NOT NULL,
    total_amount numeric(20, 4) NOT NULL,
    sent_on date NOT NULL,
    event_id text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS call_tasks (
    task_id text PRIMARY KEY,
    customer_id text NOT NULL,
    collector_id text,
    due_on date NOT NULL,
    event_id text NOT NULL UNIQUE
);

-- DisputeResolved now also keeps the invoice (cycle times by reason come from disputes).
ALTER TABLE dispute_resolutions ADD COLUMN IF NOT EXISTS invoice_id text;

CREATE INDEX IF NOT EXISTS promises_customer ON promises (customer_id);

-- Every dated movement on an invoice's balance, signed so that
-- open_balance(D) = amount - sum(amount of movements with on_date <= D).
CREATE OR REPLACE VIEW invoice_movements AS
    SELECT invoice_id, 'credit' AS kind, amount, issue_date AS on_date FROM credits
    UNION ALL SELECT invoice_id, 'cash', amount, value_date FROM applications
    UNION ALL SELECT invoice_id, 'cash', -amount, unapplied_on FROM unapplications
    UNION ALL SELECT invoice_id, 'adjustment', amount, value_date FROM adjustments
    UNION ALL SELECT invoice_id, 'write_off', amount, approved_on FROM write_offs;

-- Posted through the API, not from events (a rebuild keeps them).
CREATE TABLE IF NOT EXISTS fx_rates (
    currency text NOT NULL,             -- 1 unit of this currency ...
    reporting_currency text NOT NULL,   -- ... is worth `rate` of this one
    rate_date date NOT NULL,
    rate numeric(30, 12) NOT NULL CHECK (rate > 0),
    posted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (currency, reporting_currency, rate_date)
);

CREATE TABLE IF NOT EXISTS gl_control_totals (
    currency text NOT NULL,
    period_start date NOT NULL,
    period_end date NOT NULL,
    lines jsonb NOT NULL,               -- {"opening": "…", "invoiced": "…", …, "closing": "…"}
    posted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (currency, period_start, period_end)
);

CREATE TABLE IF NOT EXISTS period_closes (
    currency text NOT NULL,
    period_start date NOT NULL,
    period_end date NOT NULL,
    roll_forward jsonb NOT NULL,        -- the roll-forward as reported when the period closed
    closed_at timestamptz NOT NULL DEFAULT now(),
    closed_by text NOT NULL,
    PRIMARY KEY (currency, period_end)
);

-- A pre-aggregated snapshot for fast book-wide figures: the book's open balance by due date
-- and invoice date as of any date, in few rows. Each invoice adds its amount on its issue date
-- (`invoiced`); each movement on it adds its amount on greatest(movement date, issue date)
-- (`moved`), so for any D: open balances = sum(invoiced - moved) over eff_date <= D, exactly
-- the per-invoice definition. Maintained by the projection (only when a fact is new, under a
-- per-invoice advisory lock, so it is a function of the facts whatever the arrival order) and
-- recomputed set-based by the batch rebuild.
CREATE TABLE IF NOT EXISTS ar_deltas (
    currency text NOT NULL,
    eff_date date NOT NULL,
    due_date date NOT NULL,
    issue_date date NOT NULL,
    invoiced numeric(24, 4) NOT NULL DEFAULT 0,
    moved numeric(24, 4) NOT NULL DEFAULT 0,
    PRIMARY KEY (currency, eff_date, due_date, issue_date)
);

-- Facts recorded before this migration: their snapshot rows, once (the table is new here).
INSERT INTO ar_deltas (currency, eff_date, due_date, issue_date, invoiced, moved)
SELECT currency, eff_date, due_date, issue_date, sum(invoiced), sum(moved) FROM (
    SELECT currency, issue_date AS eff_date, due_date, issue_date, amount AS invoiced, 0 AS moved FROM invoices
    UNION ALL
    SELECT i.currency, greatest(m.on_date, i.issue_date), i.due_date, i.issue_date, 0, m.amount
    FROM invoice_movements m JOIN invoices i USING (invoice_id)
) r
WHERE NOT EXISTS (SELECT 1 FROM ar_deltas)
GROUP BY currency, eff_date, due_date, issue_date;
