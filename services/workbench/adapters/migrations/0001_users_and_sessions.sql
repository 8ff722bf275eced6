-- The workbench's people and their sessions. Passwords are argon2id hashes (argon2-cffi).
CREATE TABLE IF NOT EXISTS users (
    username      text PRIMARY KEY,
    display_name  text NOT NULL,
    role          text NOT NULL CHECK (role IN ('collector', 'cash_applier', 'dispute_analyst', 'manager', 'admin')),
    locale        text NOT NULL DEFAULT 'en' CHECK (locale IN ('en', 'fr')),
    password_hash text NOT NULL,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- A session is a random token (only its SHA-256 is stored) with its CSRF token.
CREATE TABLE IF NOT EXISTS sessions (
    token_hash  text PRIMARY KEY,
    username    text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
