-- +goose Up

-- App secrets, encrypted by the application (AES-256-GCM) under the key named
-- by key_id. Keyed by repository and app name, not by apps.id: an app may get
-- its secrets before its first deploy. GitHub names are case-insensitive, so
-- owner and repo are stored lower-case.
CREATE TABLE secrets (
    id         bigserial PRIMARY KEY,
    owner      text NOT NULL CHECK (owner = lower(owner) AND owner <> ''),
    repo       text NOT NULL CHECK (repo = lower(repo) AND repo <> ''),
    app        text NOT NULL CHECK (app ~ '^[a-z0-9-]{1,40}$'),
    name       text NOT NULL CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$'),
    key_id     text NOT NULL,
    sealed     bytea NOT NULL,                    -- nonce followed by ciphertext and tag
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL,
    UNIQUE (owner, repo, app, name)
);
CREATE INDEX secrets_key_id ON secrets (key_id);

-- The tip of the audit hash chain. Writers lock this one row (SELECT … FOR
-- UPDATE) before appending, which serialises them, so the chain never forks;
-- audit verify also checks that the last event is the one recorded here.
CREATE TABLE audit_chain_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id   bigint NOT NULL DEFAULT 0,
    hash      bytea
);
INSERT INTO audit_chain_head DEFAULT VALUES;

-- Events stored before this migration have neither hash; chained ones have both.
ALTER TABLE audit_events ADD CONSTRAINT audit_events_hash_pair CHECK ((prev_hash IS NULL) = (hash IS NULL));

-- The audit trail is append-only in the database itself. A role that does
-- not own audit_events cannot drop or disable these triggers (docs/runbook.md).
-- +goose StatementBegin
CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'the audit trail can only be added to';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- +goose Down
DROP TRIGGER audit_events_no_truncate ON audit_events;
DROP TRIGGER audit_events_no_update_delete ON audit_events;
DROP FUNCTION audit_events_append_only();
ALTER TABLE audit_events DROP CONSTRAINT audit_events_hash_pair;
DROP TABLE audit_chain_head;
DROP TABLE secrets;
