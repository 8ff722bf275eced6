-- The admin's changes to users, kept: who created, reset, deactivated or reactivated whom, when.
CREATE TABLE IF NOT EXISTS user_changes (
    change_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    username   text NOT NULL,
    change     text NOT NULL CHECK (change IN ('created', 'password_reset', 'deactivated', 'reactivated')),
    detail     text
);
CREATE INDEX IF NOT EXISTS user_changes_at ON user_changes (at DESC);
