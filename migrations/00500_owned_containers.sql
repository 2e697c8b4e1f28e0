-- +goose Up

-- The containers Keystone created, by the id the engine gave it. Keystone
-- starts, keeps and removes exactly these: a container found by its labels
-- alone (a build can write any label) is never adopted or removed (SPEC §6).
-- A row goes when its container is removed.
CREATE TABLE owned_containers (
    id            text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{64}$'),
    app_id        bigint NOT NULL REFERENCES apps (id),
    deployment_id bigint NOT NULL REFERENCES deployments (id),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX owned_containers_app ON owned_containers (app_id);
CREATE INDEX owned_containers_deployment ON owned_containers (deployment_id);

-- Containers made before this table existed: those that may still serve
-- (the current deployment of each app) or be in flight.
INSERT INTO owned_containers (id, app_id, deployment_id)
SELECT d.container_id, d.app_id, d.id
FROM deployments d
WHERE d.container_id ~ '^[0-9a-f]{64}$'
  AND (d.finished_at IS NULL OR d.id IN (SELECT current_deployment_id FROM apps WHERE current_deployment_id IS NOT NULL))
ON CONFLICT (id) DO NOTHING;

-- +goose Down
DROP TABLE owned_containers;
