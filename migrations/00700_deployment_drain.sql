-- +goose Up

-- What the router's switch did to the old version's in-flight requests
-- (SPEC §13): how many finished (drained) and how many failed. NULL when
-- the deployment switched no traffic through the router.
ALTER TABLE deployments
    ADD COLUMN requests_drained integer CHECK (requests_drained >= 0),
    ADD COLUMN requests_failed  integer CHECK (requests_failed >= 0);

-- +goose Down
ALTER TABLE deployments DROP COLUMN requests_drained, DROP COLUMN requests_failed;
