-- API keys of the agency (and staff) API. The key itself is shown once at
-- creation and never stored: `hash` is its SHA-256 (hex). `id` is the key's
-- public part, which is in the key and names it in logs and commands.
-- Scopes are JSON arrays as text, like every JSON column of the schema.

CREATE TABLE api_keys (
    id           TEXT   PRIMARY KEY,
    hash         TEXT   NOT NULL,
    role         TEXT   NOT NULL,
    owner        TEXT   NOT NULL,
    sources      TEXT   NOT NULL,
    types        TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    uses         BIGINT NOT NULL DEFAULT 0,
    last_used_at BIGINT
);
