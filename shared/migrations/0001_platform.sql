-- Platform tables every context has: its event store (which is also its outbox), the relay's
-- checkpoint, idempotency keys, and the consumer runner's inbox, offsets and dead letters.

CREATE TABLE IF NOT EXISTS events (
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The appending transaction's id. Readers take only rows below pg_snapshot_xmin, ordered by
    -- (transaction_id, global_position): identity values commit out of order, transaction ids
    -- below the oldest running one never gain another row.
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    stream_id text NOT NULL,
    stream_type text NOT NULL,
    version integer NOT NULL CHECK (version > 0),
    event_id uuid NOT NULL UNIQUE,
    event_type text NOT NULL,
    schema_version integer NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    payload jsonb NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (stream_id, version)
);
CREATE INDEX IF NOT EXISTS events_commit_order ON events (transaction_id, global_position);

CREATE TABLE IF NOT EXISTS event_checkpoints (
    name text PRIMARY KEY,
    transaction_id xid8 NOT NULL,
    global_position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope text NOT NULL,
    key text NOT NULL,
    request_hash text NOT NULL,
    response_status integer,
    response_body jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

CREATE TABLE IF NOT EXISTS inbox (
    consumer text NOT NULL,
    event_id text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);

CREATE TABLE IF NOT EXISTS dead_letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    event_id text,
    event_type text,
    headers jsonb NOT NULL,
    value text,
    error text NOT NULL,
    attempts integer NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (consumer, topic, partition, "offset")
);
