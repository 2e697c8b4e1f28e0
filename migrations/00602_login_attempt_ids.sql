-- +goose Up

-- A sign-in attempt is recorded before its password is checked (so a burst
-- cannot all pass the failure count at once), and forgotten by id when it
-- succeeds or is turned away.
ALTER TABLE login_failures ADD COLUMN id bigserial PRIMARY KEY;

-- +goose Down
ALTER TABLE login_failures DROP COLUMN id;
