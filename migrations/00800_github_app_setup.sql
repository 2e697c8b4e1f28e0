-- +goose Up

-- The GitHub App created by the first-run setup (SPEC §15): at most one row.
-- Every credential (App id, slug, private key, webhook secret, OAuth client)
-- is in one AES-256-GCM blob under a KEYSTONE_ENCRYPTION_KEYS key id, so a
-- copy of the table reveals nothing. Variables in the environment win over it.
CREATE TABLE github_app_credentials (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key_id     text NOT NULL,
    sealed     bytea NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One-time setup grants: the link logged at start ('link'), the state of a
-- manifest sent to GitHub ('state') and the right to add the first admin
-- once the App is stored ('admin'). Only the SHA-256 of the random value is
-- stored; a grant is good once, before expires_at.
CREATE TABLE setup_grants (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    kind       text NOT NULL CHECK (kind IN ('link', 'state', 'admin')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

-- +goose Down
DROP TABLE setup_grants;
DROP TABLE github_app_credentials;
