-- OIDC sign-in: a user signed in at the provider is linked to its subject ("<issuer> <sub>"), and
-- a sign-in under way keeps its nonce and PKCE code verifier here (by the state's SHA-256) until
-- the provider sends the browser back, ten minutes at most, used once.
ALTER TABLE users ADD COLUMN IF NOT EXISTS oidc_subject text UNIQUE;

CREATE TABLE IF NOT EXISTS oidc_logins (
    state_hash    text PRIMARY KEY,
    nonce         text NOT NULL,
    code_verifier text NOT NULL,
    next_path     text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS oidc_logins_expiry ON oidc_logins (expires_at);
