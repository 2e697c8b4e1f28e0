-- +goose Up

-- Host names of apps in domain mode (SPEC §13). A host belongs to one app:
-- the primary key decides between concurrent claims. An app's default name
-- (kind 'default') is allocated once and kept until the app is removed; its
-- domain names (kind 'domain', position in .keystone.yml order) are those of
-- its last successful deployment.
CREATE TABLE app_hosts (
    host       text PRIMARY KEY CHECK (host = lower(host) AND length(host) BETWEEN 3 AND 253),
    app_id     bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('default', 'domain')),
    position   integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX app_hosts_one_default ON app_hosts (app_id) WHERE kind = 'default';
CREATE INDEX app_hosts_app ON app_hosts (app_id);

-- +goose Down
DROP TABLE app_hosts;
