-- +goose Up

-- keep_previous (SPEC §5, §13): a replaced container kept running, unrouted,
-- for an instant rollback, until keep_until. Reconciliation leaves a kept
-- container of a live app alone before that time and removes it after.
-- NULL: not kept (serving, starting, or to be removed).
ALTER TABLE owned_containers ADD COLUMN keep_until timestamptz;

-- +goose Down
ALTER TABLE owned_containers DROP COLUMN keep_until;
