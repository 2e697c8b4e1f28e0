-- +goose Up

-- GitHub Deployments (SPEC §14): every Keystone deployment is also a GitHub
-- Deployment of its SHA, created and given statuses through the outbox.
ALTER TABLE github_outbox DROP CONSTRAINT github_outbox_kind_check;
ALTER TABLE github_outbox ADD CONSTRAINT github_outbox_kind_check
    CHECK (kind IN ('status', 'comment', 'reaction', 'deployment', 'deployment_status'));

-- The GitHub Deployment of a Keystone deployment. The row is written in the
-- transaction that queues the creation; github_id is filled in once GitHub
-- answered (or once a creation whose answer was lost is found again by the
-- marker in its payload).
CREATE TABLE github_deployments (
    deployment_id   bigint PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    installation_id bigint NOT NULL,
    owner           text NOT NULL,
    repo            text NOT NULL,
    environment     text NOT NULL,
    github_id       bigint,
    -- The last status queued for it, so that each state is posted once.
    state           text NOT NULL DEFAULT '',
    -- It is what its environment serves, as Keystone last told GitHub: the
    -- next success of the environment marks it inactive.
    active          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX github_deployments_active ON github_deployments (lower(owner), lower(repo), environment) WHERE active;

-- +goose Down
DROP TABLE github_deployments;
DELETE FROM github_outbox WHERE kind IN ('deployment', 'deployment_status');
ALTER TABLE github_outbox DROP CONSTRAINT github_outbox_kind_check;
ALTER TABLE github_outbox ADD CONSTRAINT github_outbox_kind_check
    CHECK (kind IN ('status', 'comment', 'reaction'));
