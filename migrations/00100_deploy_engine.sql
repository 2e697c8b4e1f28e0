-- +goose Up

-- The one row naming this Keystone database. Containers and images carry its
-- id (label io.keystone.instance): reconciliation and pruning only touch what
-- carries it, so two Keystones sharing a Docker engine never touch each
-- other's containers.
CREATE TABLE keystone_instance (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO keystone_instance DEFAULT VALUES;

ALTER TABLE deployments
    -- The app's .keystone.yml entry this deployment runs (a rollback: the
    -- target's), so that a retry or a rebuild never depends on the source.
    ADD COLUMN config    jsonb NOT NULL DEFAULT '{}',
    -- When the push happened (GitHub's repository.pushed_at, else receipt):
    -- with the id, the order in which pushes supersede each other.
    ADD COLUMN pushed_at timestamptz;

-- A push delivery makes at most one deployment per app, however often its
-- job runs.
CREATE UNIQUE INDEX deployments_delivery_app ON deployments (delivery_id, app_id) WHERE delivery_id IS NOT NULL;
-- Superseding looks for newer pushes of an app. (Retention and rollback
-- look for its successful deployments through 00300's index.)
CREATE INDEX deployments_app_pushes ON deployments (app_id, pushed_at, id) WHERE trigger = 'push';
CREATE INDEX apps_repository ON apps (lower(owner), lower(repo));

-- +goose Down
DROP INDEX apps_repository;
DROP INDEX deployments_app_pushes;
DROP INDEX deployments_delivery_app;
ALTER TABLE deployments DROP COLUMN pushed_at, DROP COLUMN config;
DROP TABLE keystone_instance;
