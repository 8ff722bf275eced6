-- RP-initiated logout: a session opened by an OIDC sign-in keeps the ID token the provider
-- issued, server-side only, to send back as id_token_hint when the person signs out (the
-- provider then ends its own session too). Deleted with the session; NULL for local sign-ins.
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS id_token text;
