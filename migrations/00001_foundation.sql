-- +goose Up

-- GitHub App installations and the repositories they grant, kept current from
-- installation and installation_repositories webhooks.
CREATE TABLE installations (
    id            bigint PRIMARY KEY,              -- GitHub's installation id
    account_login text NOT NULL,
    account_type  text NOT NULL DEFAULT '',
    suspended_at  timestamptz,
    deleted_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE repositories (
    id              bigint PRIMARY KEY,            -- GitHub's repository id
    installation_id bigint NOT NULL REFERENCES installations (id) ON DELETE CASCADE,
    full_name       text NOT NULL,                 -- owner/name
    private         boolean NOT NULL DEFAULT false,
    removed_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX repositories_full_name ON repositories (lower(full_name));
CREATE INDEX repositories_installation ON repositories (installation_id);

-- Every delivery Keystone acted on. The UNIQUE guid is the deduplication key: it
-- outlives River's job retention and GitHub's 3-day redelivery window.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    guid            text NOT NULL UNIQUE,
    event           text NOT NULL,
    action          text NOT NULL DEFAULT '',
    installation_id bigint,
    repository      text NOT NULL DEFAULT '',
    payload         bytea NOT NULL,                -- the raw body, as signed
    received_at     timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz
);
CREATE INDEX webhook_deliveries_received_at ON webhook_deliveries (received_at);

-- An app is one entry of a repository's .keystone.yml.
CREATE TABLE apps (
    id                    bigserial PRIMARY KEY,
    installation_id       bigint NOT NULL,
    owner                 text NOT NULL,
    repo                  text NOT NULL,
    name                  text NOT NULL CHECK (name ~ '^[a-z0-9-]{1,40}$'),
    branch                text NOT NULL,
    clone_url             text NOT NULL DEFAULT '',
    config                jsonb NOT NULL DEFAULT '{}',   -- the app's last parsed .keystone.yml entry
    host_port             integer UNIQUE CHECK (host_port BETWEEN 1 AND 65535),
    current_deployment_id bigint,                       -- the deployment serving now
    locked_by             text,
    locked_reason         text,
    locked_at             timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    removed_at            timestamptz,
    UNIQUE (owner, repo, name)
);

-- One attempt to put a SHA of an app into service.
CREATE TABLE deployments (
    id                   bigserial PRIMARY KEY,
    app_id               bigint NOT NULL REFERENCES apps (id),
    kind                 text NOT NULL CHECK (kind IN ('deploy', 'update', 'rollback', 'redeploy')),
    sha                  text NOT NULL CHECK (sha ~ '^[0-9a-f]{40}$'),
    ref                  text NOT NULL DEFAULT '',
    actor                text NOT NULL,                  -- GitHub login or Keystone user
    trigger              text NOT NULL CHECK (trigger IN ('push', 'comment', 'page')),
    state                text NOT NULL DEFAULT 'queued'
                         CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'errored', 'superseded')),
    step                 text NOT NULL DEFAULT 'queued',
    description          text NOT NULL DEFAULT '',        -- what the commit status says
    target_deployment_id bigint REFERENCES deployments (id),  -- rollback/redeploy source
    delivery_id          bigint REFERENCES webhook_deliveries (id),
    image_id             text NOT NULL DEFAULT '',
    container_id         text NOT NULL DEFAULT '',
    health_status        integer,                         -- HTTP status of the last probe
    health_ms            integer,                         -- time to healthy
    health_error         text NOT NULL DEFAULT '',
    downtime_ms          integer,                         -- switch window of an update
    log_lines            integer NOT NULL DEFAULT 0,
    log_bytes            bigint NOT NULL DEFAULT 0,
    log_truncated        boolean NOT NULL DEFAULT false,
    queued_at            timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    finished_at          timestamptz
);
CREATE INDEX deployments_app ON deployments (app_id, id DESC);
CREATE INDEX deployments_unfinished ON deployments (app_id) WHERE finished_at IS NULL;

ALTER TABLE apps ADD CONSTRAINT apps_current_deployment
    FOREIGN KEY (current_deployment_id) REFERENCES deployments (id);

-- Each step of a deployment with its timing.
CREATE TABLE deployment_steps (
    deployment_id bigint NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    position      integer NOT NULL,
    name          text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    error         text NOT NULL DEFAULT '',
    PRIMARY KEY (deployment_id, position)
);

-- The deployment log, one row a line, capped per deployment by the writer.
CREATE TABLE deployment_log_lines (
    deployment_id bigint NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    seq           integer NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    line          text NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);

-- Who did what. Append-only (enforced by a later migration) and hash-chained:
-- prev_hash/hash are filled by the writer that serialises inserts.
CREATE TABLE audit_events (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    action    text NOT NULL,
    target    text NOT NULL DEFAULT '',
    details   jsonb NOT NULL DEFAULT '{}',
    prev_hash bytea,
    hash      bytea
);

-- +goose Down
DROP TABLE audit_events;
DROP TABLE deployment_log_lines;
DROP TABLE deployment_steps;
ALTER TABLE apps DROP CONSTRAINT apps_current_deployment;
DROP TABLE deployments;
DROP TABLE apps;
DROP TABLE webhook_deliveries;
DROP TABLE repositories;
DROP TABLE installations;
