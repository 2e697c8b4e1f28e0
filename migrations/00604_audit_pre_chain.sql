-- +goose Up

-- Events stored before the hash chain began (migration 00200) have no hash.
-- Record how far they go, so that `keystone audit verify` accepts those and
-- no others: an unchained row slipped in ahead of the chain later is a break.
ALTER TABLE audit_chain_head ADD COLUMN pre_chain_last_id bigint NOT NULL DEFAULT 0;
UPDATE audit_chain_head SET pre_chain_last_id = COALESCE(
    (SELECT max(id) FROM audit_events WHERE hash IS NULL
        AND id < COALESCE((SELECT min(id) FROM audit_events WHERE hash IS NOT NULL), 9223372036854775807)), 0);

-- +goose Down
ALTER TABLE audit_chain_head DROP COLUMN pre_chain_last_id;
