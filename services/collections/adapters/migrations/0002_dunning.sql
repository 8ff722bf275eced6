-- Collections' own model beyond promises: customer profiles, strategies, the dunning ledger,
-- notices (an outbox for email), call tasks, contacts, plans, escalations, holds, write-offs.
-- Read models here are written in the same transaction as the events that record them.

-- Balance movements other than payments and credit memos, keyed by the event that made them:
-- a PaymentUnapplied reopens (+), a small-balance or approved write-off closes (-).
CREATE TABLE IF NOT EXISTS balance_adjustments (
    adjustment_key text PRIMARY KEY,
    invoice_id text NOT NULL,
    kind text NOT NULL,
    amount numeric(20, 4) NOT NULL,   -- signed: added to what is owed
    effective_on date NOT NULL
);
CREATE INDEX IF NOT EXISTS balance_adjustments_invoice ON balance_adjustments (invoice_id);

ALTER TABLE invoices ADD COLUMN IF NOT EXISTS invoice_number text;
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS strategy_id text;
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS dunning_paused boolean NOT NULL DEFAULT false;
-- Set when a payment plan on the invoice breaks: the next strategy step is due at once.
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS advanced_on date;

CREATE TABLE IF NOT EXISTS customers (
    customer_id text PRIMARY KEY,
    name text,
    currency char(3),
    credit_limit numeric(20, 4),
    registered_on date,
    language text NOT NULL DEFAULT 'en',
    time_zone text NOT NULL DEFAULT 'UTC',
    email text,
    postal_address text,
    customer_type text NOT NULL DEFAULT 'default',
    do_not_contact boolean NOT NULL DEFAULT false,
    consent jsonb NOT NULL DEFAULT '{}'::jsonb,   -- channel -> false withdraws consent
    strategy_id text,
    dunning_paused boolean NOT NULL DEFAULT false,
    collector_id text,
    segment text,
    risk_score integer,
    risk_factors jsonb,
    scored_on date,
    version integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS customers_collector ON customers (collector_id);

CREATE TABLE IF NOT EXISTS disputes (
    dispute_id text PRIMARY KEY,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    opened_on date NOT NULL,
    resolved_on date
);
CREATE INDEX IF NOT EXISTS disputes_invoice ON disputes (invoice_id);

CREATE TABLE IF NOT EXISTS strategies (
    strategy_id text NOT NULL,
    version integer NOT NULL,
    name text NOT NULL,
    steps jsonb NOT NULL,
    created_on date NOT NULL,
    created_seq bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (strategy_id, version)
);

CREATE TABLE IF NOT EXISTS compliance_policies (
    customer_type text PRIMARY KEY,
    max_attempts integer NOT NULL,
    window_days integer NOT NULL,
    quiet_start time NOT NULL,
    quiet_end time NOT NULL
);

-- The dunning ledger. One row per (customer, strategy version, step, invoice): the unique
-- constraint is what makes a daily run, repeated or concurrent, act once.
CREATE TABLE IF NOT EXISTS dunning_actions (
    customer_id text NOT NULL,
    strategy_id text NOT NULL,
    strategy_version integer NOT NULL,
    step_id text NOT NULL,
    invoice_id text NOT NULL,
    channel text NOT NULL,
    outcome text NOT NULL,        -- done | superseded
    reference_id text,            -- notice, task, escalation or hold it went into
    acted_on date NOT NULL,
    created_seq bigint GENERATED ALWAYS AS IDENTITY,
    CONSTRAINT dunning_actions_once UNIQUE (customer_id, strategy_id, strategy_version, step_id, invoice_id)
);
CREATE INDEX IF NOT EXISTS dunning_actions_invoice ON dunning_actions (invoice_id, strategy_id, step_id);

-- What the compliance guard stopped. Persistent reasons (dispute, do-not-contact, consent)
-- are recorded once per step; transient ones (frequency cap, quiet hours) once per day.
CREATE TABLE IF NOT EXISTS dunning_blocks (
    customer_id text NOT NULL,
    strategy_id text NOT NULL,
    strategy_version integer NOT NULL,
    step_id text NOT NULL,
    channel text NOT NULL,
    reason text NOT NULL,
    scope_key text NOT NULL,
    invoice_ids text[] NOT NULL,
    blocked_on date NOT NULL,
    created_seq bigint GENERATED ALWAYS AS IDENTITY,
    CONSTRAINT dunning_blocks_once UNIQUE (customer_id, strategy_id, strategy_version, step_id, channel, reason, scope_key)
);

-- Notices, email ones doubling as the send outbox: recorded with their event, sent after commit.
CREATE TABLE IF NOT EXISTS notices (
    notice_id text PRIMARY KEY,
    customer_id text NOT NULL,
    strategy_id text NOT NULL,
    strategy_version integer NOT NULL,
    step_id text NOT NULL,
    channel text NOT NULL,
    template text NOT NULL,
    language text NOT NULL,
    invoice_ids text[] NOT NULL,
    currency char(3) NOT NULL,
    total_amount numeric(20, 4) NOT NULL,
    sent_on date NOT NULL,
    recipient text,
    subject text NOT NULL,
    body text NOT NULL,
    html_body text NOT NULL,
    pdf bytea NOT NULL,
    delivery text NOT NULL,     -- pending | sent | failed | print_ready
    attempts integer NOT NULL DEFAULT 0,
    delivered_at timestamptz,
    last_error text,
    created_seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX IF NOT EXISTS notices_customer ON notices (customer_id, created_seq);
CREATE INDEX IF NOT EXISTS notices_pending ON notices (created_seq) WHERE delivery = 'pending';

CREATE TABLE IF NOT EXISTS call_tasks (
    task_id text PRIMARY KEY,
    customer_id text NOT NULL,
    strategy_id text NOT NULL,
    step_id text NOT NULL,
    invoice_ids text[] NOT NULL,
    collector_id text,
    due_on date NOT NULL,
    status text NOT NULL DEFAULT 'open',
    created_seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX IF NOT EXISTS call_tasks_collector ON call_tasks (collector_id, status);

CREATE TABLE IF NOT EXISTS contacts (
    contact_id text PRIMARY KEY,
    customer_id text NOT NULL,
    collector_id text,
    kind text NOT NULL,
    outcome text,
    note text,
    contacted_on date NOT NULL,
    next_follow_up_on date,
    created_seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX IF NOT EXISTS contacts_customer ON contacts (customer_id, contacted_on);

CREATE TABLE IF NOT EXISTS escalations (
    escalation_id text PRIMARY KEY,
    customer_id text NOT NULL,
    escalated_to text NOT NULL,
    summary text NOT NULL,
    recommended_action text NOT NULL,
    invoice_ids text[] NOT NULL,
    currency char(3) NOT NULL,
    overdue_amount numeric(20, 4) NOT NULL,
    escalated_on date NOT NULL,
    created_seq bigint GENERATED ALWAYS AS IDENTITY
);

CREATE TABLE IF NOT EXISTS credit_holds (
    hold_id text PRIMARY KEY,
    customer_id text NOT NULL,
    reason text NOT NULL,
    placed_on date NOT NULL,
    released_on date,
    release_reason text,
    created_seq bigint GENERATED ALWAYS AS IDENTITY
);
-- At most one active hold per customer.
CREATE UNIQUE INDEX IF NOT EXISTS credit_holds_active ON credit_holds (customer_id) WHERE released_on IS NULL;

CREATE TABLE IF NOT EXISTS payment_plans (
    plan_id text PRIMARY KEY,
    customer_id text NOT NULL,
    invoice_ids text[] NOT NULL,
    currency char(3) NOT NULL,
    total_amount numeric(20, 4) NOT NULL,
    installments jsonb NOT NULL,
    agreed_on date NOT NULL,
    grace_days integer NOT NULL,
    status text NOT NULL,          -- active | completed | broken
    installments_state jsonb NOT NULL DEFAULT '{}'::jsonb,   -- number -> paid | missed
    ended_on date,
    version integer NOT NULL,
    created_seq bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX IF NOT EXISTS payment_plans_customer ON payment_plans (customer_id, status);

CREATE TABLE IF NOT EXISTS approvers (
    approver_id text PRIMARY KEY,
    role text NOT NULL
);

CREATE TABLE IF NOT EXISTS write_offs (
    write_off_id text PRIMARY KEY,
    invoice_id text NOT NULL,
    customer_id text NOT NULL,
    amount numeric(20, 4) NOT NULL,
    currency char(3) NOT NULL,
    reason text NOT NULL,
    requested_by text NOT NULL,
    requested_on date NOT NULL,
    status text NOT NULL,          -- requested | approved | rejected
    decided_by text,
    decided_on date,
    decision_reason text,
    version integer NOT NULL,
    created_seq bigint GENERATED ALWAYS AS IDENTITY
);
-- One pending or approved write-off per invoice.
CREATE UNIQUE INDEX IF NOT EXISTS write_offs_live ON write_offs (invoice_id) WHERE status IN ('requested', 'approved');

-- A late payment on a broken promise: recorded on the read model, the promise stays broken.
ALTER TABLE promises ADD COLUMN IF NOT EXISTS settled_late_on date;
