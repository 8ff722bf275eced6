-- The event backbone under faults (issue 13): per-stream commit order, dead letters that keep the
-- raw bytes, stream-version tracking per consumer, unknown event types, and the relay's lease.

-- commit_order = greatest(the appending transaction's id, the commit_order of the stream's
-- previous version). Readers take rows below pg_snapshot_xmin in (commit_order, global_position)
-- order, so a stream's versions are read in version order whatever order their transactions
-- got their ids in (see shared/eventstore). Rows stored before this migration keep their
-- transaction id as their commit order, so relay checkpoints stay valid.
ALTER TABLE events ADD COLUMN IF NOT EXISTS commit_order xid8;
UPDATE events SET commit_order = transaction_id WHERE commit_order IS NULL;
ALTER TABLE events ALTER COLUMN commit_order SET DEFAULT pg_current_xact_id();
ALTER TABLE events ALTER COLUMN commit_order SET NOT NULL;
CREATE INDEX IF NOT EXISTS events_commit_order_position ON events (commit_order, global_position);

-- A parked message keeps its bytes exactly as they came off the topic (PostgreSQL text and jsonb
-- refuse NUL characters and invalid UTF-8); headers/value stay as a readable, NUL-free copy.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS raw_value bytea;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS raw_headers bytea;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS raw_key bytea;

-- The last stream version each consumer handled, per stream (ce_subject, ce_streamversion):
-- a gap or an out-of-order version is recorded in stream_anomalies.
CREATE TABLE IF NOT EXISTS consumer_stream_versions (
    consumer text NOT NULL,
    stream_id text NOT NULL,
    version integer NOT NULL,
    PRIMARY KEY (consumer, stream_id)
);

CREATE TABLE IF NOT EXISTS stream_anomalies (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer text NOT NULL,
    stream_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('gap', 'out_of_order')),
    expected_version integer NOT NULL,
    received_version integer NOT NULL,
    event_id text,
    topic text NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now()
);

-- Event types a consumer received but has no contract for: counted, never silently dropped.
CREATE TABLE IF NOT EXISTS unknown_events (
    consumer text NOT NULL,
    event_type text NOT NULL,
    schema_version integer NOT NULL,
    count bigint NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    sample_event_id text,
    sample_topic text,
    sample_partition integer,
    sample_offset bigint,
    PRIMARY KEY (consumer, event_type, schema_version)
);

-- The relay's lease: one holder per topic, a fencing token (epoch) bumped at every takeover, and
-- an expiry the holder renews. The relay saves its checkpoint only while its epoch still holds.
CREATE TABLE IF NOT EXISTS relay_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    epoch bigint NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
